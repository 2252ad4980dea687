"""Airflow for the DAG tests: an isolated AIRFLOW_HOME with a SQLite metadata database.

Airflow reads its configuration when it is first imported, so nothing here imports it at
module level: the session fixture :func:`airflow_home` sets the environment, runs
``airflow db migrate`` once in a subprocess, and only then may fixtures and tests import
``airflow``. Only the tests under ``tests/dags`` ask for it, so the rest of the suite never
imports Airflow. The DAG folder is the repository's ``dags/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "dagrun: runs whole DAGs with dag.test() against RabbitMQ on 127.0.0.1:5672 and a catalog"
    )
    # Airflow 3.3 compiles dags/.airflowignore with a pathspec class that pathspec 1.x deprecates.
    config.addinivalue_line("filterwarnings", "ignore:GitWildMatchPattern:DeprecationWarning")
    # dag.test() imports Airflow's FastAPI test client, which warns about its own httpx use.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """The repository's ``dags/``, Airflow's DAG folder in these tests."""
    return DAGS_FOLDER


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory, kubeconfig) -> Path:
    """An isolated AIRFLOW_HOME, migrated, set in the environment before Airflow is imported.

    KUBECONFIG is set here too: the kubernetes client reads it once, when first imported.
    """
    if "airflow" in sys.modules:
        pytest.fail(
            "airflow was imported before the airflow_home fixture set AIRFLOW_HOME: import it "
            "inside fixtures or tests of tests/dags only"
        )
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "KUBECONFIG": str(kubeconfig),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ.copy(),
        )
        if migrate.returncode != 0:
            pytest.fail(f"airflow db migrate failed ({migrate.returncode}):\n{migrate.stderr[-3000:]}")
        yield home


@pytest.fixture(scope="session")
def stage_module(airflow_home):
    """``dags/imgtag_stage.py``, imported the way Airflow's DAG bundle does (folder on sys.path)."""
    if str(DAGS_FOLDER) not in sys.path:
        sys.path.append(str(DAGS_FOLDER))
    import imgtag_stage

    return imgtag_stage


@pytest.fixture
def load_dags(airflow_home, monkeypatch):
    """Parse ``dags/`` like the DAG processor, with the given stage environment."""

    def load(**env: str):
        from airflow.dag_processing.dagbag import BundleDagBag

        for name in [n for n in os.environ if n.startswith(("IMGTAG_STAGE_", "IMGTAG_K8S_"))]:
            monkeypatch.delenv(name)
        monkeypatch.delenv("IMGTAG_IMAGE", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return BundleDagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER, bundle_name="dags-folder")

    return load


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory) -> Path:
    """A kubeconfig naming a loopback API server: enough to build pods, nothing is contacted."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters:
        - name: loopback
          cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
        users:
        - name: nobody
          user: {token: not-a-real-token}
        contexts:
        - name: loopback
          context: {cluster: loopback, user: nobody, namespace: imgtag}
        current-context: loopback
    """)
    )
    return path
