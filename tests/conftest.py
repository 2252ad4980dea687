"""Suite-wide test settings: quiet TensorFlow, no test writes to the real ./var, and the markers
of tests that need a service or a browser, or are slow to set up (``make quick`` leaves them out).

One model cache (``IMGTAG_CACHE_DIR``) serves the whole session, subprocesses and pytest-xdist's
workers included: the starter model is exported and converted to LiteRT once, not once per test
home (its writes are atomic, so two workers converting at once leave one whole file).
"""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("IMGTAG_HOME", tempfile.mkdtemp(prefix="imgtag-test-home-"))
# pytest-xdist's workers (``make quick``) share the run's cache: one export, not one a worker
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    _SHARED_CACHE = Path(tempfile.gettempdir()) / f"imgtag-test-cache-{_RUN}"
    _SHARED_CACHE.mkdir(exist_ok=True)
    os.environ.setdefault("IMGTAG_CACHE_DIR", str(_SHARED_CACHE))
else:
    os.environ.setdefault("IMGTAG_CACHE_DIR", tempfile.mkdtemp(prefix="imgtag-test-cache-"))

#: Fixtures that reach a service on this machine, and the marker (setup.cfg) a test using one
#: gets, so ``make quick`` can leave it out: ``-m "not (rabbitmq or postgres or browser ...)"``.
SERVICE_FIXTURES = {"rabbitmq": "rabbitmq", "fresh_postgres": "postgres", "postgres_env": "postgres"}
#: Every test here drives a real browser (Debian's Chromium through Playwright).
BROWSER_TESTS = Path(__file__).parent / "e2e" / "web"
#: Fixtures that take long to set up: a test using one is ``slow`` (``make test`` runs it,
#: ``make quick`` does not).
SLOW_FIXTURES = {
    "trained": "trains and evaluates a model on drawn shapes (tests/pipelines/training/conftest.py)",
    "live": "a real gunicorn decoding huge TIFFs (tests/catalog/test_thumbnails_decode_memory.py)",
    "live_api": "a real gunicorn that schemathesis sends thousands of requests",
    "airflow_home": "Airflow's metadata database, migrated, and its DAG parsing (tests/dags)",
    "training_env": "MLflow on SQLite, a DVC remote and a runs folder for the training stages",
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(items):
    """Mark the tests that need RabbitMQ or PostgreSQL (by fixture) or a browser (by folder), and
    those whose fixtures are slow to set up."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture in SERVICE_FIXTURES.keys() & fixtures:
            item.add_marker(SERVICE_FIXTURES[fixture])
        if SLOW_FIXTURES.keys() & fixtures:
            item.add_marker("slow")
        if BROWSER_TESTS in item.path.parents:
            item.add_marker("browser")
