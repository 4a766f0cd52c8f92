# Two commands do all set-up on a fresh machine:  make demo  and  make test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export QUANT_HOME ?= $(CURDIR)/.quant
export DAGSTER_HOME ?= $(QUANT_HOME)/dagster

CHROMIUM := /usr/bin/chromium

.PHONY: help demo test browser lint dagster-dev mlflow-ui bench clean \
	production-start production-stop production-status

help:
	@echo "make demo         set up .venv (Python 3.12) and run the main job on the embedded defaults"
	@echo "make test         set up .venv, run ruff, the import contracts and the whole test suite"
	@echo "make dagster-dev  open the Dagster UI on the demo's instance (http://127.0.0.1:3000)"
	@echo "make mlflow-ui    open the MLflow UI on the demo's tracking store (http://127.0.0.1:5000)"
	@echo "make bench        run every script in benchmarks/"
	@echo "make production-start|stop|status  the production profile (scripts/production)"
	@echo "make browser      install Debian's Chromium for the browser test (as root; make test does it)"

$(STAMP): pyproject.toml
	@py=$$(scripts/find-python312) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
	  echo "creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.sqlite.yaml $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/quant demo

# The 25 slowest tests are listed at the end.
# Nothing is written into the tree but the browser tests' screenshots, in test-artifacts/ (ignored
# by git): bytecode and numba's cache live under the temp directory.
TEST_CACHE := $(or $(TMPDIR),/tmp)/quant_assets-test-cache
test: $(STAMP) browser lint
	PYTHONPYCACHEPREFIX=$(TEST_CACHE)/pycache NUMBA_CACHE_DIR=$(TEST_CACHE)/numba \
	  HYPOTHESIS_STORAGE_DIRECTORY=$(TEST_CACHE)/hypothesis \
	  QUANT_REQUIRE_BROWSER=1 QUANT_TEST_ARTIFACTS=$(CURDIR)/test-artifacts \
	  $(VENV)/bin/pytest --durations=25

# The browser test drives Debian's Chromium (Playwright's own browser downloads fail here).
# Quiet and idempotent: nothing happens when $(CHROMIUM) exists.
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "Chromium is missing ($(CHROMIUM)) and the browser test needs it; as root run:" >&2; \
	  echo "  apt-get update && apt-get install -y chromium" >&2; exit 1; \
	fi; \
	echo "installing Chromium (Debian package chromium) for the browser test"; \
	log=$$(mktemp); \
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$$log" 2>&1; then \
	  cat "$$log" >&2; rm -f "$$log"; echo "apt-get install chromium failed" >&2; exit 1; \
	fi; \
	rm -f "$$log"; [ -x $(CHROMIUM) ] || { echo "$(CHROMIUM) still missing after apt-get" >&2; exit 1; }

# ruff (lint and format) and the layer contracts of pyproject.toml (import-linter).
lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .
	$(VENV)/bin/lint-imports --no-cache

dagster-dev: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.sqlite.yaml $(DAGSTER_HOME)/dagster.yaml
	scripts/dagster-dev $(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: $(STAMP)
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (model training view)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(QUANT_HOME)/mlflow.db -h 127.0.0.1 -p 5000

# The production profile: PostgreSQL (QUANT_PRODUCTION_PG_URL's server, or a throw-away one),
# the code server, dagster-webserver, dagster-daemon, the poller and MLflow on 127.0.0.1.
production-start: $(STAMP)
	PYTHON=$(PY) scripts/production start
production-stop:
	PYTHON=$(PY) scripts/production stop
production-status:
	PYTHON=$(PY) scripts/production status

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(QUANT_HOME) .pytest_cache .ruff_cache
