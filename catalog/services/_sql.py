"""What the services share about SQL: ``IN (...)`` lists are sent in chunks any database accepts."""

from __future__ import annotations

from collections.abc import Iterator

SQL_IN_CHUNK = 500


def chunks(values: list) -> Iterator[list]:
    """Slices short enough for an ``IN (...)`` on any database."""
    for start in range(0, len(values), SQL_IN_CHUNK):
        yield values[start : start + SQL_IN_CHUNK]
