# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned requirements first (only again when a requirements file changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A DuckDB 1.x beside it, only for the test that opens the published files as analysts' tools do
DUCK1  := .venv-duckdb1
DUCK1_STAMP := $(DUCK1)/.installed

.PHONY: demo test bench clean help

help:
	@echo "make demo   - local SQS server + simulated traffic + the pipeline, end to end"
	@echo "make test   - the test suite (what CI runs)"
	@echo "make bench  - the benchmarks (writes bench/RESULTS.md)"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(DUCK1_STAMP): requirements-duckdb1.txt
	$(PYTHON) -m venv $(DUCK1)
	$(DUCK1)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-duckdb1.txt
	touch $(DUCK1_STAMP)

demo: $(STAMP)
	$(PY) -m nelo_etl.demo

test: $(STAMP) $(DUCK1_STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(DUCK1) .demo .pytest_cache
