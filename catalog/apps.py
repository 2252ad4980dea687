"""Django app configuration of the catalog."""

import importlib.util

from django.apps import AppConfig
from django.db.backends.signals import connection_created

from catalog import timestamps
from catalog.conf import imgtag_settings
from core import decode_budget
from core.errors import UsageError

#: What tagging in the catalog's process imports: setup.cfg's ``tagger`` extra, by module name.
#: The catalog's container image installs imgtag without it (no TensorFlow).
TAGGER_MODULES = ("tensorflow", "keras", "ai_edge_litert", "tensorflow_serving", "scipy")


def missing_tagger_modules() -> list[str]:
    """The modules of the ``tagger`` extra this environment lacks (none: it can tag in process)."""
    missing = []
    for name in TAGGER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(name)
    return missing


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        """Size the process's decode budget (``IMGTAG_DECODE_MEMORY_MB``: gunicorn's threads share
        it); read PostgreSQL's time stamps with psycopg's C parser (:mod:`catalog.timestamps`); refuse to start tagging uploads in process without the model's packages: said at
        start-up, not as an ImportError on the first upload."""
        decode_budget.configure(imgtag_settings().decode_memory_bytes)
        connection_created.connect(timestamps.install, dispatch_uid="catalog.timestamps")
        if imgtag_settings().upload_tagging == "inprocess" and (missing := missing_tagger_modules()):
            raise UsageError(
                "IMGTAG_UPLOAD_TAGGING=inprocess tags uploads in the catalog's process, which needs "
                f"imgtag's `tagger` extra ({', '.join(missing)} not installed): install it "
                "(pip install 'imgtag[tagger]'), or let the queue's workers tag (IMGTAG_UPLOAD_TAGGING=queue)"
            )
