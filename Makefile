# sensorpipe — run `make help` for the targets.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
SP    := $(VENV)/bin/sensorpipe

.DEFAULT_GOAL := help
.PHONY: help setup run test lint typecheck unit dashboard-check deploy-check integration chaos screenshots bench soak clean

help: ## Show this help
	@grep -hE '^[a-z][a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

setup: ## Install everything (idempotent; quick when nothing changed)
	@bash scripts/setup.sh

run: setup ## Start the whole local stack with the demo load (Ctrl-C stops it)
	$(SP) up

test: setup lint typecheck unit dashboard-check deploy-check integration ## Everything: lint, types, unit, dashboard, deployment, integration (incl. browser)

lint: setup ## ruff lint and format check; the Python locks agree with pyproject.toml
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(PY) scripts/check_lock.py

typecheck: setup ## mypy (strict)
	$(VENV)/bin/mypy

unit: setup ## Unit tests (no I/O)
	$(PY) -m pytest tests/unit -q

dashboard-check: setup ## The dashboard: ESLint, strict TypeScript check and Vitest
	cd dashboard && npm run --silent lint && npm run --silent typecheck && npm test --silent

deploy-check: setup ## Static checks of compose, the Dockerfile and Terraform (no Docker, no AWS)
	$(PY) -m pytest tests/deploy -q

integration: setup ## Integration tests against a real Kafka broker and PostgreSQL
	$(PY) -m pytest tests/integration -q

chaos: setup ## The full fault suite under load, each run ends with the audit; figures in .state/chaos
	SENSORPIPE_CHAOS=full $(PY) -m pytest tests/integration/test_chaos*.py -q -s -p no:randomly

screenshots: setup ## The browser tests alone, writing their screenshots to docs/screenshots (the README's)
	SENSORPIPE_E2E_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/integration/test_dashboard_e2e.py -q

bench: setup ## Benchmarks on the local stack (about 22 minutes here); writes BENCHMARKS.md
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(SP) bench all

soak: setup ## The soak: the local stack at 20,000 events/s for 30 minutes, days compressed (root); into BENCHMARKS.md
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || { echo "soak needs wrk: apt-get install wrk"; exit 1; }
	$(SP) bench soak

clean: ## Remove caches and test state (keeps .state of `make run`)
	rm -rf .cache/stamps .state/test .pytest_cache .mypy_cache .ruff_cache
