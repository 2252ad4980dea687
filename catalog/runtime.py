"""Make the catalog usable from a process that is not a web server (the CLI, a worker).

:func:`setup` configures Django, creates ``IMGTAG_HOME`` when the catalog lives there (SQLite
file, local storage) and checks the database schema. Who migrates it:

- ``imgtag migrate`` (and, in Kubernetes, the ``catalog-migrate`` Job) always;
- on the embedded SQLite file, every command that opens the catalog, so ``imgtag import`` works
  on a fresh machine with no other step;
- on PostgreSQL, nothing else: the other commands check the schema and, when a migration is
  pending, stop with a message saying to run ``imgtag migrate``.

Migrations hold :func:`migration_lock` (a PostgreSQL advisory lock, a file lock beside a SQLite
database), so processes started together on a fresh database migrate once instead of racing
to create the same tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import django

from catalog.storage import get_storage
from core.errors import UnavailableError, UsageError

#: The key of the PostgreSQL advisory lock held while the catalog migrates ("imgtagMG").
MIGRATION_LOCK_KEY = int.from_bytes(b"imgtagMG", "big", signed=True)


class CatalogUnavailable(UsageError, RuntimeError):
    """The catalog database cannot be used as it is (its schema is behind: run ``imgtag migrate``),
    or cannot be reached (:class:`CatalogUnreachable`); the message says what to do. Exit 2."""


class CatalogUnreachable(UnavailableError, CatalogUnavailable):
    """The database server did not answer: trying again later may help (exit 75, a DAG task retries)."""


def setup(migrate: bool | None = None) -> None:
    """Configure Django for the catalog and prepare its database and storage.

    Args:
        migrate: True: apply pending migrations; False: leave the schema alone; None (the
            default): apply them on SQLite (the embedded catalog), and on PostgreSQL refuse to
            go on while one is pending (``imgtag migrate`` applies them).

    Raises:
        CatalogUnavailable: the schema is behind (exit 2); :class:`CatalogUnreachable`: the
            database cannot be reached (exit 75).
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    django.setup()
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, connections

    _create_local_folders(settings)
    embedded = connections[DEFAULT_DB_ALIAS].vendor == "sqlite"
    if migrate or (migrate is None and embedded):
        _migrate()
    elif migrate is None:
        _check_schema()


@contextlib.contextmanager
def migration_lock(connection) -> Iterator[None]:
    """Hold the catalog's migration lock on ``connection``'s database until the block ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    elif connection.vendor == "sqlite" and _is_file(name := str(connection.settings_dict["NAME"])):
        with open(f"{name}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def _is_file(sqlite_name: str) -> bool:
    """A SQLite database in a file, not in memory (``:memory:``, or a test's ``file:...mode=memory``)."""
    return sqlite_name not in (":memory:", "") and not sqlite_name.startswith("file:")


def _create_local_folders(settings) -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)

    storage = get_storage()
    if storage.is_local:
        Path(storage.root).mkdir(parents=True, exist_ok=True)


def _pending(connection) -> list:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return executor.migration_plan(executor.loader.graph.leaf_nodes())


def _check_schema() -> None:
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.utils import OperationalError

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        pending = _pending(connection)
    except OperationalError as exc:
        raise _unavailable(connection, exc) from exc
    if pending:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in pending[:3])
        raise CatalogUnavailable(
            f"the catalog's database schema is not up to date ({len(pending)} migration(s) pending: "
            f"{names}{' ...' if len(pending) > 3 else ''}): run `imgtag migrate` once (in Kubernetes, "
            "the catalog-migrate Job), then start this again"
        )


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.utils import OperationalError

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        if _pending(connection):  # cheap when nothing is; migrate takes the lock and checks again
            call_command("migrate", interactive=False, verbosity=0)
    except OperationalError as exc:
        raise _unavailable(connection, exc) from exc


def _unavailable(connection, exc: Exception) -> CatalogUnreachable:
    db = connection.settings_dict
    where = f"{db['HOST']}:{db['PORT'] or 'default port'}" if db.get("HOST") else db["NAME"]
    return CatalogUnreachable(
        f"cannot open the catalog database ({connection.vendor} at {where}): {exc}. "
        "Start the database server or fix DATABASE_URL; unset DATABASE_URL to use the "
        "SQLite file under IMGTAG_HOME."
    )
