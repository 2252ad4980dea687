"""The imgtag catalog: a Django project and app in one package.

Assets (content-addressed originals), their tags with provenance and review state, search over
tags, the REST API under ``/api/`` and the admin under ``/admin/``. The work itself lives in
plain functions in :mod:`catalog.services`, so the CLI, the API and the queue worker share it;
:mod:`catalog.runtime` prepares Django for code that runs outside a web server.
"""
