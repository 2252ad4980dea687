"""Django settings of the catalog, every one derived from one :class:`core.settings.Settings`.

This module builds ``Settings.from_env()`` once and keeps it as ``IMGTAG``; catalog code reads
it with :func:`catalog.conf.imgtag_settings` and passes it on (to the broker, the tagger), so a
test's override of ``settings.IMGTAG`` reaches them too. The variables are listed in
:mod:`core.settings`: the database (``DATABASE_URL``), the storage and upload limits, and the
web server's (``settings.web``: ``IMGTAG_SECRET_KEY``, ``IMGTAG_DEBUG``, ``IMGTAG_ALLOWED_HOSTS``,
``IMGTAG_HTTPS``, ``IMGTAG_NUM_PROXIES``, ``IMGTAG_REQUIRE_SECRET_KEY``, ``IMGTAG_STATIC_ROOT``).

``SECRET_KEY``: ``IMGTAG_SECRET_KEY`` when set (the same in every replica; at least 50
characters, 5 of them distinct, as Django's check ``security.W009`` asks, or nothing starts). Without it, the WSGI
entry point (``catalog.wsgi``: gunicorn, the catalog image) refuses to start with DEBUG off; any
other process (the ``imgtag`` command, ``imgtag serve``, the tests, ``make demo``) uses this
installation's own random key, made on first use in ``IMGTAG_HOME/secret-key`` (mode 0600), or
a key of its own when that folder cannot be written. There is no built-in key.

Sign-in is throttled by django-axes (:mod:`catalog.authentication`), the sign-in pages and bad
API tokens alike.

Static files (the web pages' CSS and JS, the admin's) are served by WhiteNoise from the apps'
``static/`` folders through the finders, so neither ``imgtag serve`` nor gunicorn needs a
``collectstatic`` first; ``STATIC_ROOT`` is never on the ``IMGTAG_HOME`` volume.

Importing this module has no side effect but making ``IMGTAG_HOME/secret-key`` (and the folder)
when ``IMGTAG_SECRET_KEY`` is not set, and telling :mod:`core.tf_runtime` whether TensorFlow may
print its start-up lines (``IMGTAG_TF_VERBOSE``); other folders are made by
:func:`catalog.runtime.setup`. A variable with a bad value stops it with a
:class:`core.errors.UsageError` naming the variable.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core import tf_runtime
from core.settings import Settings

#: The imgtag settings of this process (catalog.conf.imgtag_settings() reads them; tests override them).
IMGTAG = Settings.from_env()
_web = IMGTAG.web
tf_runtime.configure(verbose=IMGTAG.tf_verbose)  # in-process tagging may import TensorFlow

BASE_DIR = Path(__file__).resolve().parent

DEBUG = _web.debug

SECRET_KEY_FILE = "secret-key"  # under IMGTAG_HOME


def _installation_key(home: Path) -> str:
    """This installation's own secret key, made once in ``home/secret-key`` (mode 0600).

    A process that cannot write there (a read-only home) gets a random key of its own: signed
    values (sessions) then last as long as the process.
    """
    path = home / SECRET_KEY_FILE
    try:
        if path.exists():
            key = path.read_text().strip()
            if key:
                return key
        home.mkdir(parents=True, exist_ok=True)
        draft = home / f".{SECRET_KEY_FILE}.{os.getpid()}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(draft, path)  # atomic: of two processes starting together, the first key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
        return path.read_text().strip() or secrets.token_urlsafe(50)
    except OSError:
        return secrets.token_urlsafe(50)


def _secret_key() -> str:
    if _web.secret_key:
        _check_given_key(_web.secret_key)
        return _web.secret_key
    if _web.require_secret_key and not DEBUG:
        raise ImproperlyConfigured(
            "IMGTAG_SECRET_KEY is not set: the catalog's web server needs a secret key of its own, "
            "the same in every replica (Kubernetes: Secret imgtag-secrets). Make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, or set IMGTAG_DEBUG=true "
            "on a development machine."
        )
    return _installation_key(IMGTAG.home)


def _check_given_key(key: str) -> None:
    """Refuse a key Django's own deployment check (``security.W009``) would call weak: fewer than
    50 characters, fewer than 5 distinct ones, or the placeholder prefix of Django's startproject."""
    from django.core.checks.security.base import (
        SECRET_KEY_INSECURE_PREFIX,
        SECRET_KEY_MIN_LENGTH,
        SECRET_KEY_MIN_UNIQUE_CHARACTERS,
    )

    if (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        raise ImproperlyConfigured(
            f"IMGTAG_SECRET_KEY is too weak ({len(key)} characters, {len(set(key))} distinct): it needs at "
            f"least {SECRET_KEY_MIN_LENGTH} characters, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, "
            f"and not the {SECRET_KEY_INSECURE_PREFIX!r} placeholder (Django's check security.W009). "
            "Make one with `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = list(_web.allowed_hosts)

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
    "axes",  # failed sign-ins and bad API tokens, in its own tables (its migrations)
]

MIDDLEWARE = [
    "catalog.health.HealthCheckMiddleware",  # /healthz, /readyz: before the host check
    "django.middleware.security.SecurityMiddleware",
    "catalog.api_errors.RequestErrorMiddleware",  # NUL characters refused; a full disk is a 507
    "catalog.static_serving.StaticFilesMiddleware",  # WhiteNoise: /static/ before sessions and auth
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out sign-in into the 429 page
]

# axes' backend first: it refuses a locked-out account or address before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "catalog.roles.PermissionBackend",  # Django's ModelBackend, permissions read in one query
]

# Sign-in throttling (catalog.authentication): 5 failures of one account from one address within
# 15 minutes lock that account from that address for 15 minutes (a stranger elsewhere cannot lock
# the user out of their own network); 20 of one account from any addresses lock it everywhere;
# 5 bad API tokens lock that address's tokens. Each attempt while locked starts the cool-off
# again. The attempts live in the database (axes' database handler, weighing the two counts of a
# sign-in), so every gunicorn worker and replica counts together.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True  # axes' default, relied upon: see above
AXES_LOCKOUT_PARAMETERS = "catalog.authentication.lockout_parameters"
AXES_HANDLER = "catalog.authentication.LockoutHandler"
AXES_CLIENT_IP_CALLABLE = "catalog.authentication.client_address"
AXES_LOCKOUT_CALLABLE = "catalog.authentication.lockout_response"
# No reset on a successful sign-in: it would clear the failures counted for the address too,
# so an attacker with an account of their own could sign in between guesses at another's.
AXES_RESET_ON_SUCCESS = False

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

DATABASES = {"default": dj_database_url.parse(IMGTAG.database_url, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The catalog's queries are short (a page, a count to 1,001, a sample): parallel workers cost
    # more CPU than they save and slow them under load (bench_scale.py at a million assets on 2
    # cores: an AND count 80 ms with 2 workers, 60 ms without). Exact counts on demand are slower.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c max_parallel_workers_per_gather=0".strip()
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
STATIC_ROOT = _web.static_root or str(BASE_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = True  # serve the apps' static/ folders directly: no collectstatic needed
WHITENOISE_AUTOREFRESH = DEBUG  # pick up edited CSS and JS without a restart while developing

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Non-file form fields stay small; files are limited per file by IMGTAG.max_upload_bytes (the
# upload view keeps no more than that of any file) and in number by this setting.
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# Behind an HTTPS proxy (the Kubernetes ingress terminates TLS and sets X-Forwarded-Proto;
# only it reaches the pods): trust its header, redirect plain HTTP, send HSTS, and keep the
# session and CSRF cookies to HTTPS. `check --deploy` is then clean; without it (one machine
# over plain HTTP) it rightly warns that these four are off (W004, W008, W012, W016). /healthz
# and /readyz are answered before SecurityMiddleware: the kubelet's HTTP probes stay unredirected.
HTTPS = _web.https
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# HSTS preloading (security.W021) is a commitment for a whole registrable domain, made by its
# owner on hstspreload.org; the catalog lives on a subdomain and does not ask for it.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "catalog.authentication.LockoutTokenAuthentication",  # bad tokens: 429 after a few
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The client address of throttling (catalog.authentication.client_address): REMOTE_ADDR,
    # or the one that the nearest of this many trusted proxies put in X-Forwarded-For.
    "NUM_PROXIES": _web.num_proxies,
    "DEFAULT_PERMISSION_CLASSES": ["catalog.permissions.HasCatalogPermission"],
    "DEFAULT_RENDERER_CLASSES": ["catalog.renderers.JSONRenderer"],  # DRF's bytes, written by orjson
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "catalog.pagination.Pagination",
    "EXCEPTION_HANDLER": "catalog.api_errors.exception_handler",  # every error a 4xx/503/507 with a reason
    "DEFAULT_PARSER_CLASSES": [
        "catalog.parsers.JSONParser",  # DRF's, refusing deep nesting with a 400
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "imgtag catalog API",
    "DESCRIPTION": (
        "Upload images, find them by tag and review their tags. Every call needs a token: "
        "`Authorization: Token <key>` (`imgtag createuser NAME --role end_user|content_manager` "
        "prints one), or the web pages' session. Reads need the permission catalog.view_asset "
        "(both roles), uploads catalog.add_asset and reviews catalog.review_asset (content managers). "
        "A bad token is a 401; after 5 bad tokens from one address within 15 minutes, every token "
        "from it is a 429 with Retry-After for 15 minutes."
    ),
    "SERVE_PERMISSIONS": ["catalog.permissions.HasCatalogPermission"],
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog.api_errors.document_errors",  # the error answers every operation can give
    ],
}

# Errors go to stderr whatever DEBUG says (Django's default shows them only with DEBUG on):
# under gunicorn or `imgtag serve` a 500 then leaves its traceback in the pod's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
