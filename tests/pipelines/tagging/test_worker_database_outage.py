"""A dropped database is an outage, not a crash: ``imgtag drain`` on a real PostgreSQL catalog whose
connection is killed under it (``pg_terminate_backend``, as a restart or a failover would), and
a database that stays away. Nothing is lost, tagged twice, dead-lettered or counted a suspect.

Each test makes a PostgreSQL database of its own on 127.0.0.1 (dropped after) and its own
queues on the real RabbitMQ; both missing fail under ``CI=true``.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.pipelines.tagging.test_worker import write_images
from tests.postgres import fresh_database

COUNT = 300


@pytest.fixture
def postgres_env(env):
    """``env`` (queues of its own) on a fresh PostgreSQL catalog; ``env.pg(sql)`` queries it."""
    import psycopg

    with fresh_database("imgtag_outage") as (url, name, admin):
        env.vars["DATABASE_URL"] = url
        env.database, env.admin = name, admin

        def pg(query: str, *params):
            with psycopg.connect(url, connect_timeout=5) as db:
                return db.execute(query, params).fetchall()

        env.pg = pg
        yield env


def terminate_catalog_connections(env) -> int:
    """Kill every backend connected to the test's catalog (the drain's, the only client)."""
    rows = env.admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [env.database],
    ).fetchall()
    return sum(1 for (killed,) in rows if killed)


def tagged(env) -> int:
    return env.pg("select count(*) from catalog_asset where status = 'tagged'")[0][0]


def assert_every_photo_tagged_once(env, count: int):
    assert env.pg("select status, count(*) from catalog_asset group by status") == [("tagged", count)]
    assert env.pg("select asset_id, tag_id from catalog_assettag group by 1, 2 having count(*) > 1") == []
    assert env.depth(env.queue) == 0
    assert env.depth(f"{env.queue}.dead") == 0 and env.depth(f"{env.queue}.suspect") == 0


def wait_until(condition, what: str, process=None, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the drain exited {process.returncode}: {process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.02)


def test_a_drain_whose_database_connection_is_killed_three_times_tags_every_photo_once(
    postgres_env, tmp_path
):
    env = postgres_env
    env.run("migrate")
    assert (
        env.json("import", "--queue", str(write_images(tmp_path / "photos", COUNT, size=(96, 96))))[
            "published"
        ]
        == COUNT
    )
    drain = env.start("drain", "--json", IMGTAG_BATCH_SIZE="2")  # 8 messages a commit: many commits
    try:
        killed = []
        for _ in range(3):
            before = tagged(env)
            wait_until(lambda b=before: tagged(env) >= b + 8, "tagging goes on", drain)
            killed.append(terminate_catalog_connections(env))
        out, errors = drain.communicate(timeout=600)
    finally:
        if drain.poll() is None:
            drain.kill()
    assert drain.returncode == 0, errors[-3000:]
    assert all(killed), f"no connection to kill: {killed}"
    summary = json.loads(out)
    assert summary["database_waits"] >= 1, summary  # the outage was met, and waited out
    assert summary["received"] == summary["tagged"] == COUNT, summary  # each message once
    assert summary["dead_lettered"] == 0 and summary["suspects"] == 0, summary
    assert_every_photo_tagged_once(env, COUNT)


def test_a_database_away_longer_than_the_wait_puts_every_message_back_and_exits_75(postgres_env, tmp_path):
    env = postgres_env
    env.run("migrate")
    env.run("import", "--queue", str(write_images(tmp_path / "photos", COUNT, size=(96, 96), seed=5)))
    drain = env.start("drain", "--json", "--database-wait", "3", IMGTAG_BATCH_SIZE="2")
    try:
        wait_until(lambda: tagged(env) >= 8, "tagging starts", drain)
        env.admin.execute(
            f"ALTER DATABASE {env.database} ALLOW_CONNECTIONS false"
        )  # down, as a stopped server
        terminate_catalog_connections(env)
        out, errors = drain.communicate(timeout=300)
    finally:
        if drain.poll() is None:
            drain.kill()
    assert drain.returncode == 75, errors[-3000:]
    assert "database did not answer" in errors and "put back on the queue" in errors
    assert "Traceback" not in errors
    env.admin.execute(f"ALTER DATABASE {env.database} ALLOW_CONNECTIONS true")
    done = tagged(env)
    assert 8 <= done < COUNT
    assert env.depth(env.queue) == COUNT - done  # every message not tagged is back, once
    assert env.depth(f"{env.queue}.suspect") == 0 and env.depth(f"{env.queue}.dead") == 0

    summary = env.json("drain")  # the database is back: the rest is tagged, none as a suspect
    assert summary["tagged"] == COUNT - done and summary["suspects"] == 0, summary
    assert_every_photo_tagged_once(env, COUNT)
