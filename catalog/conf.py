"""The imgtag settings of a Django process: the one :class:`core.settings.Settings` that
:mod:`catalog.settings` built and derived Django's settings from.

Catalog code asks :func:`imgtag_settings` at call time (never at import) and passes the object
on to what it calls (the broker, the tagger, the thresholds), so an override of
``django.conf.settings.IMGTAG`` (pytest-django's ``settings`` fixture, ``override_settings``)
reaches all of them.
"""

from __future__ import annotations

from django.conf import settings

from core.settings import Settings


def imgtag_settings() -> Settings:
    """The :class:`core.settings.Settings` of this process (``django.conf.settings.IMGTAG``)."""
    return settings.IMGTAG
