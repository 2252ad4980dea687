"""WSGI entry point for a production server, e.g. ``gunicorn catalog.wsgi``.

Migrations are not applied here: run ``imgtag`` once (or ``python -m catalog migrate``) first.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")

application = get_wsgi_application()
