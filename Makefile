# orchestrion: two commands do all the set-up.
#   make demo   creates .venv, installs everything, composes with every built-in model
#   make test   the same install, then the test suite
# Both are idempotent: a second run installs nothing unless pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSTEM := $(VENV)/.system-deps

.PHONY: install demo test test-slow test-fuzz test-browser lint bench clean

install: $(STAMP) $(SYSTEM)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU build that pip finds on this machine's disk; installing it first keeps
# pip from pulling a multi-GB CUDA build to satisfy another package's requirement.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(SYSTEM): scripts/system-deps.sh | $(VENV)/bin/python
	bash scripts/system-deps.sh
	touch $(SYSTEM)

demo: install
	$(VENV)/bin/orchestrion demo --out demo-out

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

# --durations: CI prints the slowest tests, so a test that grows slow is seen before the suite passes 10 minutes.
test: install lint
	$(PY) -m pytest -q --durations=15

test-slow: install
	$(PY) -m pytest -q -m slow

# The long fuzz runs alone (100,000 inputs per reader; part of test-slow too).
test-fuzz: install
	$(PY) -m pytest -q -m slow tests/system/test_fuzz.py -s

# Every browser test, the slow ones (each model end to end) included; `make test` runs the quick ones.
test-browser: install
	$(PY) -m pytest -q -m browser --durations=10

clean:
	rm -rf $(VENV) demo-out .pytest_cache
