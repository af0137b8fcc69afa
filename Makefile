# nanopoor: every target installs what it needs through `setup`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NP := $(BIN)/nanopoor
RECORD ?= records/baseline_adamw
DATA ?= data/demo
ARGS ?=

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
	$(NP) data docs --out data/docs

submit: setup
	$(NP) submit $(RECORD) $(ARGS)

reproduce: setup
	$(NP) reproduce $(RECORD) $(ARGS)

leaderboard: setup
	$(NP) leaderboard

leaderboard-check: setup
	$(NP) leaderboard --check

review: setup
	$(NP) review $(LOG)

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/demo data/docs .pytest_cache
