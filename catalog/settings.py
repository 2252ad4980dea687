"""Django settings of the catalog, read once from the environment.

The imgtag settings (``IMGTAG_HOME``, ``DATABASE_URL``, ``IMGTAG_STORAGE_URL``, upload limits)
come from :class:`pipelines.settings.Settings`; the Django-only ones are:

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_SECRET_KEY`` | an insecure development key | ``SECRET_KEY``; set it in production |
| ``IMGTAG_DEBUG`` | ``false`` | Django's ``DEBUG`` (``1``/``true``/``yes`` turn it on) |
| ``IMGTAG_ALLOWED_HOSTS`` | ``127.0.0.1,localhost`` | comma-separated host names to answer to |
| ``IMGTAG_STATIC_ROOT`` | ``catalog/staticfiles`` in the package | where ``collectstatic`` puts files (optional) |

Static files (the web pages' CSS and JS, the admin's) are served by WhiteNoise from the apps'
``static/`` folders through the finders, so neither ``imgtag serve`` nor gunicorn needs a
``collectstatic`` first; ``STATIC_ROOT`` is never on the ``IMGTAG_HOME`` volume.

Importing this module has no side effect: folders are created by :func:`catalog.runtime.setup`.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from pipelines.settings import Settings

_imgtag = Settings.from_env()

BASE_DIR = Path(__file__).resolve().parent

# imgtag settings, read by catalog.services and catalog.storage at call time (tests override them)
IMGTAG_HOME = str(_imgtag.home)
IMGTAG_STORAGE_URL = _imgtag.storage_url
IMGTAG_MAX_UPLOAD_BYTES = _imgtag.max_upload_bytes
IMGTAG_MAX_PIXELS = _imgtag.max_pixels
IMGTAG_MAX_DECODE_BYTES = _imgtag.max_decode_bytes
IMGTAG_UPLOAD_TAGGING = _imgtag.upload_tagging
IMGTAG_CACHE_DIR = str(_imgtag.cache_dir)  # thumbnails under <cache>/thumbnails

SECRET_KEY = (
    os.environ.get("IMGTAG_SECRET_KEY") or "django-insecure-imgtag-development-key-set-IMGTAG_SECRET_KEY"
)
DEBUG = os.environ.get("IMGTAG_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("IMGTAG_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "catalog",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
]

MIDDLEWARE = [
    "catalog.health.HealthCheckMiddleware",  # /healthz, /readyz: before the host check
    "django.middleware.security.SecurityMiddleware",
    "catalog.static_serving.StaticFilesMiddleware",  # WhiteNoise: /static/ before sessions and auth
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "catalog.urls"
WSGI_APPLICATION = "catalog.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalog.web.context.capabilities",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(_imgtag.database_url, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The API, the CLI and the worker may write at the same time: WAL lets readers go on while
    # one writes, and BEGIN IMMEDIATE takes the write lock up front (no deadlock on upgrade).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("IMGTAG_STATIC_ROOT") or str(BASE_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = True  # serve the apps' static/ folders directly: no collectstatic needed
WHITENOISE_AUTOREFRESH = DEBUG  # pick up edited CSS and JS without a restart while developing

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Non-file form fields stay small; files are limited per file by IMGTAG_MAX_UPLOAD_BYTES (the
# upload view keeps no more than that of any file) and in number by this setting.
DATA_UPLOAD_MAX_NUMBER_FILES = 100

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.permissions.HasCatalogPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "catalog.pagination.Pagination",
    "EXCEPTION_HANDLER": "catalog.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "imgtag catalog API",
    "DESCRIPTION": (
        "Upload images, find them by tag and review their tags. Every call needs a token: "
        "`Authorization: Token <key>` (`imgtag createuser NAME --role end_user|content_manager` "
        "prints one), or the web pages' session. Reads need the permission catalog.view_asset "
        "(both roles), uploads catalog.add_asset and reviews catalog.review_asset (content managers)."
    ),
    "SERVE_PERMISSIONS": ["catalog.permissions.HasCatalogPermission"],
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# Errors go to stderr whatever DEBUG says (Django's default shows them only with DEBUG on):
# under gunicorn or `imgtag serve` a 500 then leaves its traceback in the pod's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
