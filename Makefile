# tsm — every set-up step lives here so that a fresh clone needs only `make run` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_SYMBOLS ?= 20
DEMO_DAYS ?= 30
PYTEST_ARGS ?=

.PHONY: run status test lint install system-packages services pg-tune db migrate seed bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

system-packages:  ## Debian packages the tests use (Chromium for browser tests, InfluxDB for the backup test)
	@bash bin/system-packages

services:  ## start PostgreSQL and Redis when they are down (development machines and CI)
	@bash bin/services

pg-tune:  ## server settings the benchmark figures were measured with (ALTER SYSTEM + restart of a local cluster)
	@bash bin/pg-tune

db: install services
	$(PY) manage.py ensure_database

migrate: db
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py lifecycle_apply  # TimescaleDB lane: compression/retention policies as TSM_COMPRESS_AFTER / TSM_RETENTION say

seed: migrate
	$(PY) manage.py seed_demo --symbols $(DEMO_SYMBOLS) --days $(DEMO_DAYS)

# make run: DEBUG=true unless you set DEBUG (the settings default to false); it says so
run: export DEBUG ?= true
run: seed
	$(PY) manage.py preflight
	$(PY) manage.py ensure_admin
	@$(PY) bin/supervisord-conf --var var --host $(HOST) --port $(PORT) --out var/supervisord.conf
	@echo "DEBUG=$(DEBUG) (make run's default; DEBUG=false make run to see the site as in production)"
	@echo "supervisord starts web (http://$(HOST):$(PORT)/), a Celery worker and Celery beat, restarting any that dies;"
	@echo "  logs: var/log/{worker,beat,supervisord}.log; make status shows them; Ctrl-C stops everything"
	@exec $(VENV)/bin/supervisord -n -c var/supervisord.conf

status:  ## the processes `make run` supervises (pid, uptime, restarts show as a short uptime)
	@$(VENV)/bin/supervisorctl -c var/supervisord.conf status

lint: install  ## ruff (lint + format check) and the import-linter contracts of the layers (docs/architecture.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) bin/import-cycles

test: install system-packages services lint
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

bench: migrate
	$(PY) bench/bench_foundation.py --rows 2000000

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
