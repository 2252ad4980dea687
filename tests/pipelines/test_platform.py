"""What ``imgtag platform`` decides before it starts anything (the processes: tests/e2e/test_platform.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from core.settings import Settings
from pipelines.platform import Platform, PlatformError, Ports, airflow_db_urls, check_ports


def test_airflow_metadata_is_sqlite_by_default_and_postgresql_through_psycopg_by_url(tmp_path):
    sync, asynchronous = airflow_db_urls(None, tmp_path)
    assert sync == f"sqlite:///{tmp_path / 'airflow.db'}"
    assert asynchronous == f"sqlite+aiosqlite:///{tmp_path / 'airflow.db'}"
    for given in (
        "postgres://u@db:5432/airflow",
        "postgresql://u@db:5432/airflow",
        "postgresql+psycopg2://u@db:5432/airflow",
    ):
        assert airflow_db_urls(given, tmp_path) == ("postgresql+psycopg://u@db:5432/airflow",) * 2
    with pytest.raises(PlatformError, match="expected postgres://"):
        airflow_db_urls("mysql://u@db/airflow", tmp_path)


def test_a_taken_or_doubled_port_is_refused_with_the_option_that_moves_it():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(PlatformError, match=f"port {taken} \\(catalog\\) is taken.*--catalog-port"):
            check_ports({"catalog": taken})
    with pytest.raises(PlatformError, match="given to both airflow and mlflow: change --mlflow-port"):
        check_ports({"airflow": taken, "mlflow": taken})


def test_every_process_shares_one_home_and_the_dags_start_active(tmp_path):
    platform = Platform(Settings.from_env({"IMGTAG_HOME": str(tmp_path)}), ports=Ports(airflow=18123))
    env = platform.environment()
    assert env["IMGTAG_HOME"] == str(tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).joinpath("training_pipeline.py").is_file()
    # Secrets are made once and kept private: a restart keeps sessions and tokens valid.
    assert platform.environment()["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert oct((tmp_path / "platform" / "airflow-jwt-secret").stat().st_mode & 0o777) == "0o600"
    # Airflow's admin password is made before the api-server starts, so the stages can set a run's
    # note through the REST API (the training DAG's `note` task) with the connection it names.
    password_file = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    connection = json.loads(env["AIRFLOW_CONN_IMGTAG_AIRFLOW_API"])
    assert connection == {
        "conn_type": "http",
        "host": "http://127.0.0.1:18123",
        "login": "admin",
        "password": json.loads(password_file.read_text())["admin"],
    }
    assert json.loads(platform.environment()["AIRFLOW_CONN_IMGTAG_AIRFLOW_API"]) == connection
    names = [c.name for c in platform.plan()]
    assert names[:4] == [
        "airflow api-server",
        "airflow scheduler",
        "airflow dag-processor",
        "airflow triggerer",
    ]
    assert {"mlflow server", "catalog", "tagging worker"} <= set(names)
