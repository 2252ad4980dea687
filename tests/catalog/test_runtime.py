"""Who migrates the catalog, and what happens when several processes start together on a fresh database.

Real processes on real databases: a fresh SQLite file, and a fresh PostgreSQL database made for
the test on 127.0.0.1 (skipped without one, failing under ``CI=true``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

IMGTAG = str(Path(sys.executable).parent / "imgtag")
POSTGRES = os.environ.get("IMGTAG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def clean_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGTAG_", "DATABASE_URL", "DJANGO_"))}
    env.update(IMGTAG_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def start_together(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen([IMGTAG, *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(300), *p.communicate()) for p in processes]


@pytest.fixture
def fresh_postgres():
    import psycopg

    try:
        admin = psycopg.connect(f"{POSTGRES}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                f"PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is not reachable: {exc}"
            )
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"imgtag_migrations_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_on_a_fresh_postgresql_database_commands_say_to_migrate_and_three_migrations_at_once_all_work(
    fresh_postgres, tmp_path
):
    env = clean_env(tmp_path / "home", fresh_postgres)
    refused = subprocess.run([IMGTAG, "search", "cat"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "not up to date" in refused.stderr and "imgtag migrate" in refused.stderr

    done = start_together([["migrate"]] * 3, env)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]
    assert all("up to date" in d.stdout for d in done)
    searched = subprocess.run(
        [IMGTAG, "search", "cat", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert searched.returncode == 0, searched.stderr


def test_on_a_fresh_sqlite_catalog_three_commands_started_together_all_work(tmp_path):
    env = clean_env(tmp_path / "home")
    done = start_together([["search", "cat", "--json"], ["migrate"], ["search", "dog", "--json"]], env)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]


def test_an_unreachable_database_exits_75_so_a_task_retries(tmp_path):
    """A database server that does not answer is worth retrying (exit 75), unlike a schema that is
    behind (exit 2, above): the message names the server and what to check."""
    env = clean_env(tmp_path / "home", "postgresql://postgres@127.0.0.1:1/nothing_listens")
    out = subprocess.run([IMGTAG, "search", "cat"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 75, out.stderr
    assert "cannot open the catalog database" in out.stderr and "127.0.0.1:1" in out.stderr
    assert "Traceback" not in out.stderr
