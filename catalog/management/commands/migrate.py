"""Django's ``migrate``, holding the catalog's migration lock while it runs.

Every way the catalog's schema is migrated goes through here (``imgtag migrate``, the
Kubernetes Job's ``python -m catalog migrate``, pytest-django creating a test database), so
processes started together on a fresh database migrate once: the first takes the lock and
migrates, the others wait for it and then find nothing to do.
"""

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from catalog.runtime import migration_lock


class Command(DjangoMigrate):
    help = (
        f"{DjangoMigrate.help} Holds the catalog's migration lock while it runs (a PostgreSQL "
        "advisory lock; a file lock beside a SQLite database)."
    )

    def handle(self, *args, **options):
        with migration_lock(connections[options["database"]]):
            return super().handle(*args, **options)
