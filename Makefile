# imgtag: `make demo` and `make test` work on a fresh clone; both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
DEMO_HOME ?= var/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install tools browser demo platform labelled-sample lint quick test test-sqlite test-postgres bench starter-model clean

# Infrastructure checkers kept out of .venv: checkov pins old packaging/networkx/cachetools
# that would downgrade them under Airflow, MLflow and DVC; promtool comes from Debian's
# prometheus package, unpacked here (nothing is installed system-wide, no service starts).
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
TOOLS := .tools
PROMTOOL := $(TOOLS)/prometheus/usr/bin/promtool
export IMGTAG_CHECKOV := $(abspath $(CHECKOV))
export IMGTAG_PROMTOOL := $(abspath $(PROMTOOL))

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)  ## create .venv and install imgtag with its test tools

$(CHECKOV): infra/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infra/checkov-requirements.txt
	touch $@

$(PROMTOOL):
	mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } \
		|| { echo "cannot download Debian's prometheus package (for promtool): check apt sources"; exit 1; }
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/prometheus
	$(PROMTOOL) --version >/dev/null

tools: $(CHECKOV) $(PROMTOOL)  ## checkov (own venv) and promtool (Debian package, unpacked) for tests/infra

# tests/e2e/web drive Debian's Chromium through Playwright (never `playwright install`); installing
# it needs root. IMGTAG_CHROMIUM=/path/to/chromium uses another binary instead.
CHROMIUM := $(or $(IMGTAG_CHROMIUM),/usr/bin/chromium)
export IMGTAG_CHROMIUM := $(CHROMIUM)

$(CHROMIUM):
	{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium 2>/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; } \
		|| { echo "cannot install Debian's chromium package (for tests/e2e/web): run as root, or set IMGTAG_CHROMIUM"; exit 1; }
	test -x $@ || { echo "$@ is missing after installing Debian's chromium: set IMGTAG_CHROMIUM to its path"; exit 1; }

browser: $(CHROMIUM)  ## Debian's Chromium for the browser tests in tests/e2e/web

demo: install  ## import the photos scikit-image ships (or DEMO_DIR=...) and show their tags
	IMGTAG_HOME=$(DEMO_HOME) $(BIN)/python -m pipelines.demo $(DEMO_DIR)

PLATFORM_HOME ?= var/platform
platform: install  ## Airflow, MLflow, the catalog, a worker (and Prometheus after `make tools`) until Ctrl-C
	IMGTAG_HOME=$(PLATFORM_HOME) $(BIN)/imgtag platform

# Two folder-per-tag trees of 120 drawn images (coloured shapes) at the starter's 256 px: one
# labelled with the shapes, one (other drawings) with the colours, for the README's walk-through:
# two rounds of training on different tags (the tests train on the same drawings).
labelled-sample: install  ## draw two small labelled sets into $(PLATFORM_HOME)/labelled/{shapes,colours}
	$(BIN)/python -c "import sys; from pathlib import Path; from tests.shapes import LABELS, make_tree; \
		[print(make_tree(Path(sys.argv[1]).resolve() / name, 120, seed=seed, size=256, only=LABELS[name])) \
		 for name, seed in (('shapes', 3), ('colours', 4))]" $(PLATFORM_HOME)/labelled

# The starter model from labelled photos (never committed): STARTER_DATA=/path/to/dam-photos.
STARTER_DATA ?= ../shared/data/dam-photos
starter-model: install  ## rebuild serving/starter_model/ and the calibrated tag thresholds from STARTER_DATA
	@test -f $(STARTER_DATA)/manifest.csv || { echo "$(STARTER_DATA)/manifest.csv not found: set STARTER_DATA to the labelled photos (manifest.csv, boxes.csv, images/)"; exit 1; }
	$(BIN)/imgtag starter build --data $(STARTER_DATA) --work var/starter-build

# Import contracts (lint-imports, setup.cfg [importlinter]), ruff (pyproject.toml) and the DAG
# files' imports, in seconds, before the 13-minute suite. They are tests (tests/test_layout.py),
# so the suite and CI run them too; a plain `pytest` sees the same verdict.
lint: install  ## import contracts, ruff and the layout checks of tests/test_layout.py
	$(BIN)/python -m pytest -q tests/test_layout.py

# The inner loop: no service (RabbitMQ, PostgreSQL), no browser, nothing marked slow or dagrun
# (setup.cfg's markers; tests/conftest.py marks the service and browser tests, and those whose
# fixtures are slow to set up: a trained model, a live gunicorn, Airflow's database).
QUICK := not (rabbitmq or postgres or browser or slow or dagrun)
quick: install  ## the fast tests while you work: no services, no browser, no slow or dagrun tests (one process a core)
	$(BIN)/python -m pytest -q -n auto -m "$(QUICK)"

test: test-sqlite test-postgres  ## lint, the whole suite on SQLite, then the catalog tests on PostgreSQL

test-sqlite: install tools browser lint
	$(BIN)/python -m pytest -q

test-postgres: install
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest -q tests/catalog

bench: install  ## benchmarks under tests/bench (figures and ratios, no asserts on time)
	@for bench in tests/bench/bench_*.py; do echo "== $$bench"; $(BIN)/python $$bench || exit 1; done

clean:
	rm -rf var/demo .pytest_cache $(TOOLS)
