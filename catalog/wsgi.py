"""WSGI entry point for a production server, e.g. ``gunicorn catalog.wsgi``.

Migrations are not applied here: run ``imgtag`` once (or ``python -m catalog migrate``) first.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
# A web server: without IMGTAG_SECRET_KEY (and with DEBUG off) catalog.settings refuses to start
# rather than fall back to a key of this machine's. This sets the default core.settings reads
# (settings.web.require_secret_key); `imgtag serve` loads the settings first.
os.environ.setdefault("IMGTAG_REQUIRE_SECRET_KEY", "true")

application = get_wsgi_application()
