# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned requirements first (only again when a requirements file changes).
# Production: `make install` (runtime requirements only, no test tools) and the README's cron line.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A DuckDB 1.x beside it, only for the test that opens the published files as analysts' tools do
DUCK1  := .venv-duckdb1
DUCK1_STAMP := $(DUCK1)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: install demo test test-fast test-airflow bench browser dashboard clean help

help:
	@echo "make install   - production: .venv with the runtime requirements only, and the logs/ and work/ folders"
	@echo "make demo      - local SQS server + simulated traffic + the pipeline, end to end"
	@echo "make test      - the test suite (what CI runs)"
	@echo "make test-fast - the fast subset (-m 'not slow'): about a minute"
	@echo "make bench     - the benchmarks (writes bench/RESULTS.md)"
	@echo "make browser   - install Debian's chromium if missing (the dashboard's browser test; CI runs it)"
	@echo "make dashboard - the dashboard of the demo's data: .demo/site/index.html (run make demo first)"
	@echo "make test-airflow - load the Airflow DAG with Airflow's DagBag, in .venv-airflow (CI runs it too)"

# the compiled parser (nelo_etl/_wirefast.c): built in place with the machine's C compiler
NATIVE := nelo_etl/_wirefast$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

$(RUNTIME_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(RUNTIME_STAMP)

$(NATIVE): nelo_etl/_wirefast.c setup.py | $(RUNTIME_STAMP)
	$(PY) setup.py --quiet build_ext --inplace
	rm -rf build

install: $(RUNTIME_STAMP) $(NATIVE)
	mkdir -p logs work
	@echo "installed: $(VENV) (runtime only); now put .env beside config.json (chmod 600) and the cron line (README)"

$(STAMP): requirements.txt requirements-dev.txt requirements-spark.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP) $(RUNTIME_STAMP)

$(DUCK1_STAMP): requirements-duckdb1.txt
	$(PYTHON) -m venv $(DUCK1)
	$(DUCK1)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-duckdb1.txt
	touch $(DUCK1_STAMP)

demo: $(STAMP) $(NATIVE)
	$(PY) -m nelo_etl.demo

# The suite runs in TEST_WORKERS processes (pytest-xdist), one test file to a process: module
# fixtures and the one Spark session per process stay shared within their file. Most tests wait on
# subprocesses, servers and disk, so two processes finish the suite in about 60% of the time on
# two cores. TEST_WORKERS=0: everything in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) $(DUCK1_STAMP) $(NATIVE)
	$(PYTEST)

# the fast subset (no subprocess runs, servers, browsers or Spark): about a minute
test-fast: $(STAMP) $(NATIVE)
	$(PYTEST) -m "not slow"

# The Airflow DAG loaded by Airflow's DagBag, in its own environment (Airflow pins its own tree).
AIRFLOW_VENV := .venv-airflow
test-airflow:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check apache-airflow==3.3.2 pytest==9.2.0
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_VENV)/home PYTHONPATH=. $(AIRFLOW_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_orchestration.py

bench: $(STAMP) $(NATIVE)
	$(PY) -m bench

# The dashboard's browser test needs a headless Chromium. Idempotent: does nothing when one is there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1

dashboard: $(STAMP) $(NATIVE)
	$(PY) gold_transforms.py --config .demo/config.json --report --format html --out .demo/site

clean:
	rm -rf $(VENV) $(DUCK1) $(AIRFLOW_VENV) .demo .pytest_cache build $(NATIVE)
