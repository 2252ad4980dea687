"""A PostgreSQL database of a test's own on the server at 127.0.0.1 (``IMGTAG_TEST_POSTGRES``):
made for the test and dropped after; a server that does not answer fails the test under
``CI=true`` and skips it otherwise."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

SERVER = os.environ.get("IMGTAG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def admin_connection(server: str = SERVER):
    """An autocommit connection to the server's ``postgres`` database."""
    import psycopg

    try:
        return psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        problem = f"PostgreSQL at {server} (user postgres) is not reachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


@contextlib.contextmanager
def fresh_database(prefix: str, server: str = SERVER) -> Iterator[tuple[str, str, object]]:
    """``(url, name, admin connection)`` of a new database, dropped (connections and all) after."""
    admin = admin_connection(server)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}", name, admin
    finally:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
