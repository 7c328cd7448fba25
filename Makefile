# The whole quick start: `make serve` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GUARD_PORT ?= 8080
export GUARD_PORT

.PHONY: serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.run

serve: $(VENV)/.run  ## install, migrate the embedded SQLite database, create demo keys, serve
	$(BIN)/guard db upgrade
	$(BIN)/guard demo
	$(BIN)/guard serve --port $(GUARD_PORT)

test: $(VENV)/.test  ## install with test extras and run every test (PostgreSQL too if GUARD_TEST_POSTGRES_URL)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test  ## ruff and mypy
	$(BIN)/ruff check guard tests bench
	$(BIN)/mypy guard

bench: $(VENV)/.test  ## benchmarks (not run in CI)
	$(BIN)/python bench/http_overhead.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/siem_forward.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
