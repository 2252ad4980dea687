# imgtag: `make demo` and `make test` work on a fresh clone; both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
DEMO_HOME ?= var/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test test-sqlite test-postgres bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)  ## create .venv and install imgtag with its test tools

demo: install  ## import the photos scikit-image ships (or DEMO_DIR=...) and show their tags
	IMGTAG_HOME=$(DEMO_HOME) $(BIN)/python -m pipelines.demo $(DEMO_DIR)

test: test-sqlite test-postgres  ## the whole suite on SQLite, then the catalog tests on PostgreSQL

test-sqlite: install
	$(BIN)/python -m pytest -q

test-postgres: install
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest -q tests/catalog

bench: install  ## benchmarks under tests/bench (figures and ratios, no asserts on time)
	@for bench in tests/bench/bench_*.py; do echo "== $$bench"; $(BIN)/python $$bench || exit 1; done

clean:
	rm -rf var/demo .pytest_cache
