# Forewarn: the README's commands. Everything runs inside .venv, with usage analytics off and its own
# Prefect home, so nothing Forewarn starts reaches any host but loopback and the ones you configure.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | md5sum | cut -c1-8)

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export FEAST_USAGE := False
export PREFECT_HOME ?= $(CURDIR)/.forewarn/prefect
export PREFECT_LOGGING_LEVEL ?= WARNING
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_LOGGING_LEVEL ?= WARNING
export MPLBACKEND := Agg

DEMO_OUT ?= out/demo

.PHONY: help install demo test test-fast test-nova nova-env lint serve serve-stop soak bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)  ## create .venv and install Forewarn with its pinned dependencies

demo: $(STAMP)  ## simulate a fleet, train, and replay the last day in closed loop; writes a report
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/forewarn demo --out $(DEMO_OUT)

test: $(STAMP)  ## lint, type-check and run every test tier (the real-Nova tier first, in its own environment)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/ruff check .
	$(BIN)/mypy forewarn adapters flows
	$(MAKE) --no-print-directory test-nova
	BIN=$(BIN) scripts/run-tests.sh

nova-env: $(STAMP)  ## the separate virtualenv with real Nova and Placement for tests/nova
	scripts/nova-env.sh

test-nova: nova-env  ## OpenStack adapter against real Nova (API, scheduler, conductor, fake computes) in process
	.venv-nova/bin/python -m pytest -q tests/nova -p no:cacheprovider

test-fast: $(STAMP)  ## the unit tier only
	$(BIN)/pytest -q -m "not integration and not slow"

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy forewarn adapters flows

serve: $(STAMP)  ## the fleet service, Prefect server (http://127.0.0.1:4200), every deployment, a first model and a worker
	ops/serve.sh

serve-stop:  ## stop all `make serve` started, flow-run processes included; nothing is left running
	ops/serve.sh stop

SOAK_MINUTES ?= 30

soak: $(STAMP)  ## tests/test_serve_live.py soaked for SOAK_MINUTES (30): a private serve, kills, restart, checks
	FOREWARN_SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/pytest -q -s -p no:cacheprovider tests/test_serve_live.py

bench: $(STAMP)  ## speed and memory figures, each beside its floor, as JSON under bench/results
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/python -m bench.run --out bench/results

clean:  ## remove the virtualenv and every generated file
	rm -rf $(VENV) .venv-nova .forewarn out .mypy_cache .ruff_cache .pytest_cache
