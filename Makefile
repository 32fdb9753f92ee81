# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned requirements first (only again when a requirements file changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean help

help:
	@echo "make demo   - local SQS server + simulated traffic + the pipeline, end to end"
	@echo "make test   - the test suite (what CI runs)"
	@echo "make bench  - the benchmarks (writes bench/RESULTS.md)"

$(STAMP): requirements.txt requirements-dev.txt requirements-spark.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nelo_etl.demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .demo .pytest_cache
