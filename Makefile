# nanopoor: every target installs what it needs through `setup`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NP := $(BIN)/nanopoor
RECORD ?= records/baseline_adamw
DATA ?= data/demo
ARGS ?=
# submissions and reproductions are held to one T4's limits on any GPU (harness/t4_limits.py);
# `make submit T4=` runs without them
T4 ?= --as-t4

.PHONY: setup test demo data data-docs submit reproduce leaderboard leaderboard-check review bench clean

setup: $(VENV)/.installed

# the pinned cpu torch goes in first: an unpinned torch would pull the multi-gb cuda build.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(NP) demo

data: setup
	$(NP) data demo --out data/demo

data-docs: setup
	$(NP) data files ../shared/corpus/docs/*.jsonl.xz --dataset docs --out data/docs

submit: setup
	$(NP) submit $(RECORD) $(T4) $(ARGS)

reproduce: setup
	$(NP) reproduce $(RECORD) $(T4) $(ARGS)

leaderboard: setup
	$(NP) leaderboard

leaderboard-check: setup
	$(NP) leaderboard --check

review: setup
	$(NP) review $(LOG)

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/demo .pytest_cache
