# Two commands do all set-up on a fresh machine:  make demo  and  make test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export QUANT_HOME ?= $(CURDIR)/.quant
export DAGSTER_HOME ?= $(QUANT_HOME)/dagster

.PHONY: help demo test lint dagster-dev mlflow-ui bench clean

help:
	@echo "make demo         set up .venv (Python 3.12) and run the main job on the embedded defaults"
	@echo "make test         set up .venv and run ruff and the whole test suite (PostgreSQL included)"
	@echo "make dagster-dev  open the Dagster UI on the demo's instance (http://127.0.0.1:3000)"
	@echo "make mlflow-ui    open the MLflow UI on the demo's tracking store (http://127.0.0.1:5000)"
	@echo "make bench        run every script in benchmarks/"

$(STAMP): pyproject.toml
	@py=$$(scripts/find-python312) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
	  echo "creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/
	$(VENV)/bin/quant demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

dagster-dev: $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(QUANT_HOME)/mlflow.db -h 127.0.0.1 -p 5000

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(QUANT_HOME) .pytest_cache .ruff_cache
