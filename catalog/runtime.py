"""Make the catalog usable from a process that is not a web server (the CLI, a worker).

:func:`setup` configures Django, creates ``IMGTAG_HOME`` when the catalog lives there (SQLite
file, local storage) and brings the database schema up to date, so ``imgtag import`` works on
a fresh machine with no other step.
"""

from __future__ import annotations

import os
from pathlib import Path

import django


class CatalogUnavailable(RuntimeError):
    """The catalog database cannot be reached or migrated; the message says what to do."""


def setup(migrate: bool = True) -> None:
    """Configure Django for the catalog and prepare its database and storage.

    Args:
        migrate: apply pending migrations (quietly; a cheap check when none is pending).

    Raises:
        CatalogUnavailable: the database cannot be reached.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    django.setup()
    from django.conf import settings

    _create_local_folders(settings)
    if migrate:
        _migrate()


def _create_local_folders(settings) -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    from catalog.storage import get_storage

    storage = get_storage()
    if storage.is_local:
        Path(storage.root).mkdir(parents=True, exist_ok=True)


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor
    from django.db.utils import OperationalError

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            call_command("migrate", interactive=False, verbosity=0)
    except OperationalError as exc:
        db = connection.settings_dict
        where = f"{db['HOST']}:{db['PORT'] or 'default port'}" if db.get("HOST") else db["NAME"]
        raise CatalogUnavailable(
            f"cannot open the catalog database ({connection.vendor} at {where}): {exc}. "
            "Start the database server or fix DATABASE_URL; unset DATABASE_URL to use the "
            "SQLite file under IMGTAG_HOME."
        ) from exc
