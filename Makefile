# Two commands: `make pipeline` (build the environment, run the production workflow) and
# `make test` (the whole suite). Everything else here is what those two need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ENV    ?= prod

.PHONY: pipeline test install jars lint unit docs schemas wipe-staging mlflow-ui clean

pipeline: install ## build the environment, then run the production workflow
	$(PY) run_pipeline.py --env $(ENV)

test: install ## the whole suite: unit, notebook and integration tests
	$(PY) -m pytest

lint: $(VENV)/.installed ## ruff (lint, format), the layers of lib/ (import-linter) and mypy
	$(VENV)/bin/ruff check lib tests benchmarks docs/hooks run_pipeline.py
	$(VENV)/bin/ruff format --check lib tests benchmarks docs/hooks run_pipeline.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# No JVM, PostgreSQL or Kafka: it needs no Java and no jars (.ci/without-java make unit).
unit: lint ## the fast lane: lint, then the unit tests that start no service, no kernel and no trained model (under 2 minutes)
	$(PY) -m pytest tests/unit -m "not slow and not spark and not postgres and not kafka"

# The docs site, from docs/ and the notebooks, into site/ (--strict: a broken link or a missing
# page fails the build). Nothing is fetched at build time and no notebook is executed.
docs: $(VENV)/.installed ## build the docs site into site/ (open site/index.html)
	$(PY) -m mkdocs build --strict

install: $(VENV)/.installed $(VENV)/.jars $(VENV)/.class-archive

# The lock pins the whole dependency tree, so pip never backtracks.
$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ is needed, $(PYTHON) is " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev,docs]"
	touch $@

# Spark resolves the Delta Lake jars once (Maven Central, or ~/.m2 / the Ivy cache); Maven
# resolves Kafka's broker jars once into ~/.m2. Later runs reuse both offline.
$(VENV)/.jars: $(VENV)/.installed
	$(PY) -m lib.platform.spark
	@if command -v mvn >/dev/null 2>&1; then $(PY) -m lib.platform.services.kafka_server jars; else \
	  echo "note: no Maven (mvn): Kafka's broker jars are fetched the first time a stream publishes to Kafka (make test does: apt-get install maven)"; fi
	touch $@

jars: $(VENV)/.jars

# The Spark server's classes, archived once by the JDK (class data sharing): each server then
# starts, and runs its first Delta write, in about half the time. Without one it still runs.
$(VENV)/.class-archive: $(VENV)/.jars
	$(PY) -m lib.platform.spark archive
	touch $@

schemas: install ## regenerate conf/schemas/*.json from the config models (a test fails when they are stale)
	$(PY) -m lib.bundle.schemas

wipe-staging: install ## delete staging's tables, models and runs
	$(PY) run_pipeline.py --env staging --wipe

mlflow-ui: install ## browse runs and registered models at http://127.0.0.1:5000
	$(PY) -m mlflow ui --backend-store-uri "$$($(PY) -c 'from lib.core.config import load_env; print(load_env("$(ENV)").tracking_uri)')"

clean: ## stop the lakehouse's servers (Spark, serving, PostgreSQL, Kafka), delete the project's .venv and its local lakehouse (never a conda env)
	-test -x $(PY) && for env in dev staging prod; do $(PY) -m lib.serving stop --env $$env; done
	-test -x $(PY) && $(PY) -m lib.platform.spark stop
	-test -x $(PY) && for env in dev staging prod; do $(PY) -m lib.platform.services.postgres remove --env $$env; done
	-test -x $(PY) && for env in dev staging prod; do $(PY) -m lib.platform.services.kafka_server remove --env $$env; done
	rm -rf .venv .lakehouse
