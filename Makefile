# Two commands on a fresh machine: `make demo` and `make test`. Both create the venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-backends demo lint typecheck unit bench bench-quick bench-full bench-counts bench-artifacts bench-selection clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench-installed

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The whole suite but the backend matrix: the session fixture starts a real `mlflow server`
## (SQLite, loopback, free port).
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -m "not backends"

## The backend matrix (tests/backends): the core deletion semantics against a default
## `mlflow server` on PostgreSQL and on MariaDB. Installs Debian's `postgresql` and
## `mariadb-server` first when missing (as root); their tests error, never skip, without them.
test-backends: $(STAMP)
	$(BIN)/python -c "from tests.support import mariadb, postgres; postgres.find_binaries(); mariadb.find_binaries()"
	$(BIN)/python -m pytest -m backends tests/backends

## Unit tests only (no server): fast feedback while editing.
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

## Starts a local mlflow server, seeds 3 experiments, runs a concurrent cleanup, prints the result.
demo: $(STAMP)
	$(BIN)/python -m examples.demo

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --quick

## The whole frontier grid, 8 x 25,000 traces, nothing but the fixed loops boxed (about an hour).
bench-full: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --full

## Counting and start-up at backfill scale (1,000,000 traces; SQLite and PostgreSQL).
bench-counts: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.counting

bench-artifacts: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.artifacts

## Selecting and planning 2,000 experiments (one all_experiments job; 4- and 1-worker servers).
bench-selection: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.selection

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
