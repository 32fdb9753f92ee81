# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned requirements first (only again when a requirements file changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-airflow bench clean help

help:
	@echo "make demo   - local SQS server + simulated traffic + the pipeline, end to end"
	@echo "make test   - the test suite (what CI runs)"
	@echo "make test-airflow - load the Airflow DAG with Airflow's DagBag, in .venv-airflow (CI runs it too)"
	@echo "make bench  - the benchmarks (writes bench/RESULTS.md)"

$(STAMP): requirements.txt requirements-dev.txt requirements-spark.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nelo_etl.demo

test: $(STAMP)
	$(PY) -m pytest -q

# The Airflow DAG loaded by Airflow's DagBag, in its own environment (Airflow pins its own tree).
AIRFLOW_VENV := .venv-airflow
test-airflow:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check apache-airflow==3.3.2 pytest==9.2.0
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_VENV)/home PYTHONPATH=. $(AIRFLOW_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_orchestration.py

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .demo .pytest_cache
