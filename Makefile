# aq: every set-up step a newcomer needs is one of these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

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

bench: $(STAMP) services ## throughput, fan-out and round-trip benchmarks
	$(BIN)/python -m benchmarks.memory_broker --json benchmarks/results/memory.json
	$(BIN)/python -m benchmarks.redis_broker --json benchmarks/results/redis.json
	$(BIN)/python -m benchmarks.amqp_broker --json benchmarks/results/amqp.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
