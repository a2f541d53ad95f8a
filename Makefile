PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv install lint types test check bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

lint: install
	$(BIN)/ruff check threadsched tests bench scripts examples
	$(BIN)/ruff format --check threadsched tests bench scripts examples

types: install
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest

check: lint types test

bench: install
	$(BIN)/pip install -q psutil
	$(BIN)/python bench/run.py

demo: install
	$(BIN)/threadsched demo

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis bench/results
