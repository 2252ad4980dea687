"""PostgreSQL's time stamps are read by psycopg's C parser, with the values Django's loader gives."""

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from catalog import timestamps

pytestmark = pytest.mark.django_db

VALUES = [
    "2026-12-07 11:02:48.663473+00",
    "2026-12-07 11:02:48+00",
    "1999-01-01 00:00:00.000001+05:30",
    "2024-02-29 23:59:59.999999-08",
    "0001-01-01 00:00:00+00",
    None,
]


def read(register=None) -> list:
    with connection.cursor() as cursor:
        if register:
            register(cursor.cursor)
        cursor.execute(
            "SELECT v::timestamptz FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i", [VALUES]
        )
        return [row[0] for row in cursor.fetchall()]


def test_time_stamps_are_read_as_djangos_loader_reads_them():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's loaders (make test-postgres runs it)")
    if not timestamps.C_PARSER:
        pytest.skip("psycopg's C implementation is not installed: Django's loader is left as it is")
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(timestamps.TIMESTAMPTZ, 0)
    assert issubclass(loader, timestamps.TzLoader) and loader.timezone is connection.timezone
    fast = read()
    djangos = read(lambda cursor: register_tzloader(connection.timezone, cursor))
    assert fast == djangos and [v is None or v.tzinfo is connection.timezone for v in fast] == [True] * 6
    assert [v.isoformat() for v in fast[:2]] == [
        "2026-12-07T11:02:48.663473+00:00",
        "2026-12-07T11:02:48+00:00",
    ]
    naive = read(
        lambda cursor: cursor.adapters.register_loader(
            timestamps.TIMESTAMPTZ, type("Naive", (timestamps.TzLoader,), {"timezone": None})
        )
    )
    assert naive[:5] == [v.replace(tzinfo=None) for v in djangos[:5]]  # USE_TZ=False: naive, as Django's
