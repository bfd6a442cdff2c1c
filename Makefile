# Two commands that work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: the package alone (what `make demo` needs, ~100 MB) and the development set on top of it
# (tests, linters, Ray, datasets, Playwright: ~1.1 GB) with the test data fetched once, so `make test` then
# needs no network at all.
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-apart test-all lint bench bench-demo clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python scripts/fetch_test_data.py
	touch $(STAMP)

venv: $(STAMP)

demo: $(RUNTIME)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

# What the default run leaves out (pyproject markers): the Ray, browser and wall-clock tests.
test-apart: $(STAMP)
	$(BIN)/python -m pytest -q -m "ray or browser or timing"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check batchcap tests benchmarks
	$(BIN)/mypy

bench-demo: $(STAMP)
	$(BIN)/batchcap bench --demo --out bench-out

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf demo bench-out .pytest_cache .mypy_cache .ruff_cache
