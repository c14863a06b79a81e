# deskstream — every command a user or CI needs. Run `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) deploy/local/stackctl.py
STAMP := $(VENV)/.installed

.PHONY: help venv provision up down status run demo redrive test test-unit lint docs chaos bench clean

help:
	@echo "make run      start Kafka, FerretDB and the five services, load a demo retailer, play traffic (Ctrl-C stops)"
	@echo "make test     install what is missing, start a test stack, run the whole suite"
	@echo "make up/down  start everything in the background (returns when every /healthz is 200) / stop it"
	@echo "make status   what is running"
	@echo "make redrive  send dead-lettered records back to their topics once the cause is fixed"
	@echo "make docs     regenerate docs/asyncapi.json and docs/openapi/*.json from the code"
	@echo "make chaos    kill services, the broker and the database under load; prove nothing is lost (reports/chaos.json)"
	@echo "make bench    throughput, latency and memory end to end, with Kafka/FerretDB/FastStream yardsticks (bench/results.json)"
	@echo "make clean    stop and delete local data (keeps the download cache)"
	@echo "make demo     play the demo traffic against a running stack (make up first)"
	@echo "make provision  download and build Kafka and FerretDB into the cache, nothing started"
	@echo "make venv     create .venv with the project and its test tools"
	@echo "make test-unit  the unit tests alone (seconds; no Kafka or FerretDB)"
	@echo "make lint     ruff (format check and lint) and mypy on services/ and shared/ (pyproject.toml configures them)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is not installed (Python >= 3.11 is needed)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: Python >= 3.11 is needed"; exit 1; }
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }  # missing or half-made: (re)create
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $@

venv: $(STAMP)

provision: $(STAMP)
	@$(STACK) provision

up: $(STAMP)
	@$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: $(STAMP)
	@$(STACK) status

run: $(STAMP)
	@$(PY) -m deploy.demo

demo: $(STAMP)
	@$(PY) -m deploy.demo --no-wait

# send dead letters back to where they came from once the cause is fixed (ARGS="--topic ingest.messages")
redrive: $(STAMP)
	@$(PY) -m deploy.redrive $(ARGS)

docs: $(STAMP)
	@$(PY) -m docs.generate

# the fault suite on a stack of its own (.state/chaos): table on stdout, details in reports/chaos.json
chaos: $(STAMP)
	@$(STACK) provision
	@$(PY) -m tests.chaos.run $(ARGS)

# end to end on a stack of its own (.state/bench), ~10 min (ARGS=--quick: ~3 min); run under
# `flock /tmp/deskstream-bench.lock` when others share the machine
bench: $(STAMP)
	@$(STACK) provision
	@$(PY) -m bench.run $(ARGS)

test-unit: $(STAMP)
	@$(PY) -m pytest tests/unit -q

# every check runs, so one run reports all that is wrong; fails if any did
lint: $(STAMP)
	@rc=0; \
	$(VENV)/bin/ruff format --check services shared || rc=$$?; \
	$(VENV)/bin/ruff check services shared || rc=$$?; \
	$(VENV)/bin/mypy services shared || rc=$$?; \
	exit $$rc

# the whole suite against real Kafka and FerretDB (or KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL,
# or testcontainers with DESKSTREAM_INFRA=containers); the test stack is stopped afterwards
test: $(STAMP)
	@$(STACK) provision
	@$(PY) deploy/local/testtools.py
	@set -o pipefail; rc=0; \
	$(PY) -m pytest -q -rs -p no:cacheprovider tests || rc=$$?; \
	$(STACK) clean --state-dir .state/test >/dev/null 2>&1 || true; \
	exit $$rc

clean:
	@if [ -x $(PY) ]; then $(STACK) clean; $(STACK) clean --state-dir .state/test; fi
