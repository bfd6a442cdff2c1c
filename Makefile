# Two commands that work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all soak lint bench bench-demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

# A night, compressed (issue 17): 50,000 images for ~20 minutes through a rotating fault schedule.
# Smaller: make soak SOAK_IMAGES=5000 SOAK_MINUTES=3. The numbers land in soak-report.json.
SOAK_IMAGES ?= 50000
SOAK_MINUTES ?= 20
soak: $(STAMP)
	BATCHCAP_SOAK_IMAGES=$(SOAK_IMAGES) BATCHCAP_SOAK_MINUTES=$(SOAK_MINUTES) BATCHCAP_SOAK_REPORT=$(abspath soak-report.json) \
		$(BIN)/python -m pytest -q -s -m slow tests/integration/test_soak.py -k night

lint: $(STAMP)
	$(BIN)/ruff check batchcap tests benchmarks
	$(BIN)/mypy

bench-demo: $(STAMP)
	$(BIN)/batchcap bench --demo --out bench-out

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf demo bench-out .pytest_cache .mypy_cache .ruff_cache
