# nanopoor: every target installs what it needs through `setup`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NP := $(BIN)/nanopoor
RECORD ?=
LOG ?=
DATA ?= data/demo
ARGS ?=
# submissions and reproductions are held to one T4's limits on any GPU (harness/t4_limits.py);
# `make submit T4=` runs without them
T4 ?= --as-t4

.PHONY: setup need-ssh-keygen need-bwrap test test-all test-fast lint demo data data-docs submit reproduce leaderboard leaderboard-check review bench clean need-record need-log

setup: need-ssh-keygen need-bwrap $(VENV)/.installed

# records run in a bubblewrap sandbox (docs/trust.md). as root on Debian/Ubuntu (CI, Colab, a
# container) setup installs it; anyone else gets one line saying how, and can still review logs
# and build the board. runs without it need --no-isolation and are marked isolated: false.
need-bwrap:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "setup: installing bubblewrap with apt-get (the sandbox records run in; under a minute)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } \
	      || { echo "error: apt-get could not install bubblewrap; install it by hand, or run records with --no-isolation (unofficial)" >&2; exit 1; }; \
	  else \
	    echo "warning: bubblewrap (bwrap) is not installed and setup cannot install it here: ask an admin for 'apt-get install bubblewrap' (Debian/Ubuntu) or 'dnf install bubblewrap' (Fedora); until then runs need --no-isolation and are marked isolated: false" >&2; \
	  fi; }

# reproductions are signed and their signatures checked with OpenSSH's ssh-keygen (docs/reproducers.md):
# it comes with ssh almost everywhere, but a slim container may lack it
need-ssh-keygen:
	@command -v ssh-keygen >/dev/null || { echo "error: ssh-keygen not found: install OpenSSH's client (Debian/Ubuntu: apt-get install openssh-client) to sign and check reproductions" >&2; exit 1; }

# the pinned cpu torch goes in first: an unpinned torch would pull the multi-gb cuda build.
# pip shows its own progress; each step says what it does. the whole setup took 40 s (idle) to
# 11 min (heavily loaded) of wall-clock time on a 2-core machine with a local wheel cache.
$(VENV)/.installed: pyproject.toml
	@echo "setup 1/3: python venv in $(VENV) (a few seconds)"
	$(PY) -m venv $(VENV)
	@echo "setup 2/3: torch 2.13.0, cpu build (a 192 MB wheel, 754 MB installed: the longest step)"
	$(BIN)/pip install --progress-bar on torch==2.13.0
	@echo "setup 3/3: nanopoor and its pinned dependencies (about 50 packages)"
	$(BIN)/pip install --progress-bar on -e '.[test]'
	touch $@
	@echo "setup done: $(VENV) is ready"

# the test targets print a line per test file as it ends (pytest's own progress, not -q) and name the
# slow red-team block as it starts (tests/suite_progress.py), so a loaded machine is never silent for minutes.
# what CI runs: everything but the tests marked archive (the cases of superseded records, slow cpu
# stand-ins for gpu paths, and the red team's variants of an attack whose kind runs here once)
test: setup
	$(BIN)/python -m pytest -m "not archive"

# every test, the archive included (about 14 more minutes on 2 cores): before a harness release
test-all: setup
	$(BIN)/python -m pytest

# the inner loop: everything but the tests that start real runs (marked slow)
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not archive"

LINT_PATHS := nanopoor harness supervisor tests benchmarks scripts

# ruff, configured in pyproject.toml; frozen records are excluded there
lint: setup
	$(BIN)/python -m ruff check $(LINT_PATHS)

demo: setup
	$(NP) demo

data: setup
	$(NP) data demo --out data/demo

data-docs: setup
	$(NP) data docs --out data/docs

# RECORD and LOG have no default: a forgotten one is a one-line hint, not a silent baseline run.
need-record:
	@if [ -z "$(RECORD)" ]; then echo "error: say which record, e.g. make $(MAKECMDGOALS) RECORD=records/muon_3xlr (records: $$(ls records | tr '\n' ' '))" >&2; exit 1; fi

need-log:
	@if [ -z "$(LOG)" ]; then echo "error: say which log, e.g. make review LOG=runs/<run>/log.txt (or a run folder, or a NanoPoor / modded-nanogpt / llm.c / MLPerf log)" >&2; exit 1; fi

submit: need-record setup
	$(NP) submit $(RECORD) $(T4) $(ARGS)

reproduce: need-record setup
	$(NP) reproduce $(RECORD) $(T4) $(ARGS)

leaderboard: setup
	$(NP) leaderboard

leaderboard-check: setup
	$(NP) leaderboard --check

review: need-log setup
	$(NP) review $(LOG) $(ARGS)

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/demo data/docs .pytest_cache
