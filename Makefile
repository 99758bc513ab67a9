# aq: every set-up step a newcomer needs is one of these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
ARQ_VENV := .venv-bench-arq
ARQ_STAMP := $(ARQ_VENV)/.installed

.PHONY: install demo test lint format typecheck services stop-services bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,redis,amqp]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install aq with its development tools

demo: $(STAMP) ## run the quickstart on the in-memory broker (no servers needed)
	$(BIN)/python examples/quickstart.py

services: ## install and start redis-server and rabbitmq-server on 127.0.0.1 if missing
	scripts/services.sh start

stop-services:
	scripts/services.sh stop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) services lint typecheck ## lint, type checks and the whole test suite
	$(BIN)/pytest

# The peers aq is measured against live in virtualenvs of their own, never in .venv.
$(BENCH_STAMP): pyproject.toml benchmarks/requirements-peers.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[redis,amqp,uvloop,zstd,msgpack]' -r benchmarks/requirements-peers.txt
	touch $@

$(ARQ_STAMP): benchmarks/requirements-arq.txt
	$(PYTHON) -m venv $(ARQ_VENV)
	$(ARQ_VENV)/bin/pip install --quiet --upgrade pip
	$(ARQ_VENV)/bin/pip install --quiet -r benchmarks/requirements-arq.txt
	touch $@

bench: $(BENCH_STAMP) $(ARQ_STAMP) services ## aq and its peers side by side: benchmarks/results/
	$(BENCH_VENV)/bin/python -m benchmarks.suite
	$(BENCH_VENV)/bin/python -m benchmarks.memory_broker --json benchmarks/results/memory.json
	$(BENCH_VENV)/bin/python -m benchmarks.schedules --json benchmarks/results/schedules.json
	$(BENCH_VENV)/bin/python -m benchmarks.dashboard --json benchmarks/results/dashboard.json
	$(BENCH_VENV)/bin/python -m benchmarks.workflows --json benchmarks/results/workflows.json
	$(BENCH_VENV)/bin/python -m benchmarks.codecs --json benchmarks/results/codecs.json
	$(BENCH_VENV)/bin/python -m benchmarks.policies --json benchmarks/results/policies.json

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(ARQ_VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
