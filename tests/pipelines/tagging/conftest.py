"""Fixtures for tests against the real RabbitMQ on 127.0.0.1:5672 (never mocked).

Each test gets its own queue names and its own IMGTAG_HOME (SQLite catalog and storage), and
drives ``imgtag`` as subprocesses, as a user and Airflow do. When RabbitMQ does not answer,
the tests fail under ``CI=true`` with a message naming it, and are skipped otherwise.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pika
import pytest

AMQP_URL = os.environ.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IMGTAG = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture(scope="session")
def rabbitmq():
    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except pika.exceptions.AMQPError as exc:
        problem = f"RabbitMQ at 127.0.0.1:5672 is not reachable ({exc!r}); start it with 'rabbitmq-server -detached'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    connection.close()
    return AMQP_URL


class Env:
    """An isolated imgtag installation: its own catalog, storage and queues."""

    def __init__(self, home: Path, queue: str):
        self.home = home
        self.queue = queue
        self.vars = {
            **os.environ,
            "IMGTAG_HOME": str(home),
            "IMGTAG_QUEUE": queue,
            "IMGTAG_AMQP_URL": AMQP_URL,
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        self.vars.pop("DATABASE_URL", None)

    def run(self, *args, codes=(0,), timeout=600, **env) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*IMGTAG, *args], capture_output=True, text=True, timeout=timeout, env={**self.vars, **env}
        )
        assert done.returncode in codes, (
            f"imgtag {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def json(self, *args, **kwargs):
        return json.loads(self.run(*args, "--json", **kwargs).stdout)

    def start(self, *args, **env) -> subprocess.Popen:
        return subprocess.Popen(
            [*IMGTAG, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.vars, **env},
        )

    def sql(self, query: str, *params):
        import sqlite3

        with sqlite3.connect(f"file:{self.home / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(query, params).fetchall()

    def channel(self):
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        return connection, connection.channel()

    def depth(self, queue: str) -> int:
        connection, channel = self.channel()
        try:
            return channel.queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()


@pytest.fixture
def env(rabbitmq, tmp_path):
    environment = Env(tmp_path / "home", f"test.{uuid.uuid4().hex[:10]}")
    yield environment
    connection, channel = environment.channel()
    for queue in (environment.queue, f"{environment.queue}.dead", f"{environment.queue}.suspect"):
        channel.queue_delete(queue)
    channel.exchange_delete(f"{environment.queue}.dead")
    connection.close()
