# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned requirements first (only again when a requirements file changes).
# Production: `make install` (runtime requirements only, no test tools) and the README's cron line.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: install demo test bench clean help

help:
	@echo "make install - production: .venv with the runtime requirements only, and the logs/ and work/ folders"
	@echo "make demo    - local SQS server + simulated traffic + the pipeline, end to end"
	@echo "make test    - the test suite (what CI runs)"
	@echo "make bench   - the benchmarks (writes bench/RESULTS.md)"

$(RUNTIME_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)
	mkdir -p logs work
	@echo "installed: $(VENV) (runtime only); now put .env beside config.json (chmod 600) and the cron line (README)"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP) $(RUNTIME_STAMP)

demo: $(STAMP)
	$(PY) -m nelo_etl.demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .demo .pytest_cache
