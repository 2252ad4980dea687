"""PostgreSQL time stamps read by psycopg's C parser, not its pure-Python one.

Django reads ``timestamptz`` values through its own loader, a subclass of psycopg's *Python*
``TimestamptzLoader`` (to set the connection's time zone on each value), so every time stamp is
parsed in Python even where psycopg's C implementation is installed (``psycopg[binary]``). A
search page of 50 assets reads about 450 of them (each tag row's ``updated_at``): at a million
assets that was about a tenth of a search request's CPU in the web worker. :class:`TzLoader`
is Django's loader with psycopg's C parser inside, five times faster a value, and the same
values: the C parser's result with the connection's time zone set, as Django's loader does.

:func:`install` registers it on each new connection (``connection_created``), where psycopg's
C implementation is there; Django keeps it, as its ``timezone`` is the connection's.
"""

from __future__ import annotations

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format

TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid
#: psycopg's own text loader of ``timestamptz``: its C class where psycopg's C implementation is installed
_FAST = psycopg.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
C_PARSER = psycopg.pq.__impl__ in ("c", "binary")


class TzLoader(Loader):
    """Django's ``timestamptz`` loader (the connection's ``timezone`` set on each value), parsing
    with psycopg's C loader."""

    timezone = None  # set per connection by install(), compared by Django before each cursor

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._parse = _FAST(oid, context).load

    def load(self, data):
        value = self._parse(data)  # in the session's time zone, which Django sets to its own
        return value if value.tzinfo is self.timezone else value.replace(tzinfo=self.timezone)


def install(sender, connection, **kwargs) -> None:
    """A ``connection_created`` receiver: register :class:`TzLoader` on a new PostgreSQL
    connection (nothing on SQLite, or without psycopg's C implementation)."""
    if connection.vendor != "postgresql" or not C_PARSER:
        return
    loader = type("ConnectionTzLoader", (TzLoader,), {"timezone": connection.timezone})
    connection.connection.adapters.register_loader(TIMESTAMPTZ, loader)
