"""Catalog test setup: real databases, a private IMGTAG_HOME per test, and small test doubles.

- SQLite (default): the test database is a real file in a temporary folder.
- PostgreSQL (``DATABASE_URL=postgres://...``): pytest-django creates ``test_<name>``. When the
  server does not answer, the session stops with a message naming it when ``CI=true``, and
  the database tests are skipped with that message otherwise.
- Every test gets its own ``IMGTAG_HOME`` and storage folder, so stored files can be counted:
  the catalog's one settings object, ``django.conf.settings.IMGTAG``, is rebuilt for it. A test
  changes a setting with ``settings.IMGTAG = dataclasses.replace(settings.IMGTAG, ...)``
  (pytest-django's ``settings`` fixture puts it back).
- ``fake_tagger`` stands in for the model (same interface as :class:`core.tagger.Tagger`,
  real labels with thresholds): it scores by dominant colour, so the tests do not load TensorFlow.
- Users have the role their test needs: ``user`` (alice) is a content manager, ``end_user``
  (bob) may only search, view and download; ``client_with_token`` and ``reader`` send their
  tokens, ``anonymous`` sends nothing.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import ClassVar

import cv2
import dj_database_url
import numpy as np
import psycopg
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import imageio
from core.results import TagResult, TagScore
from core.settings import Settings
from core.vocabulary import Vocabulary
from serving import current as tagging

POSTGRES_SCHEMES = ("postgres://", "postgresql://", "pgsql://")


def _postgres_problem() -> str | None:
    """Why the PostgreSQL server of DATABASE_URL cannot be used; None if it can or is not used."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(POSTGRES_SCHEMES):
        return None
    config = dj_database_url.parse(url)
    host, port = config["HOST"] or "127.0.0.1", config["PORT"] or 5432
    try:
        psycopg.connect(
            host=host,
            port=port,
            user=config["USER"] or "postgres",
            password=config["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()).rstrip(".?")
        return (
            f"PostgreSQL at {host}:{port} is not reachable (DATABASE_URL={url}): {reason}. "
            "Start PostgreSQL there (user postgres, trust auth), "
            "or unset DATABASE_URL to test on SQLite."
        )
    return None


@pytest.fixture(scope="session")
def _database_server_ready() -> None:
    problem = _postgres_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.exit(problem, returncode=1)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings, tmp_path_factory) -> None:
    """On SQLite, test on a real database file rather than Django's in-memory default."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(
            tmp_path_factory.mktemp("catalog-db") / "test_catalog.sqlite3"
        )


@pytest.fixture(scope="session")
def django_db_setup(_database_server_ready, django_db_setup):
    """pytest-django's database setup, after checking the server answers."""
    yield


@pytest.fixture(autouse=True)
def imgtag_home(tmp_path, monkeypatch, settings):
    """A fresh IMGTAG_HOME (and storage folder under it) for every test; cheap password hashing."""
    home = tmp_path / "imgtag-home"
    monkeypatch.setenv("IMGTAG_HOME", str(home))
    monkeypatch.delenv("IMGTAG_STORAGE_URL", raising=False)
    cache = home / "cache"  # the thumbnails are this test's; the converted models are the session's
    cache.mkdir(parents=True)
    for shared in ("models", "starter"):
        (target := Path(os.environ["IMGTAG_CACHE_DIR"]) / shared).mkdir(parents=True, exist_ok=True)
        (cache / shared).symlink_to(target, target_is_directory=True)
    settings.IMGTAG = dataclasses.replace(
        Settings.from_env(),  # the home just set: storage and model repository under it
        cache_dir=cache,
        upload_tagging="inprocess",  # the queue path is tested against RabbitMQ in tests/pipelines/tagging
    )
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
    return home


@pytest.fixture
def stored_files(imgtag_home):
    """A function listing the files in this test's storage (temporary files included)."""
    root = imgtag_home / "storage"
    return lambda: sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 190, 40)}


def make_image(
    colour: str = "red", seed: int = 0, fmt: str = "png", size: tuple[int, int] = (48, 64)
) -> bytes:
    """Encoded image bytes (OpenCV): a colour with a little noise, distinct for each seed."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 20, (*size, 3)), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def image():
    """``image(colour="red", seed=0, fmt="png")`` -> encoded bytes."""
    return make_image


FAKE_PARENT = {
    "egyptian cat": "cat",
    "cat": "animal",
    "dog": "animal",
    "coffee mug": "cup",
    "cup": "container",
}


def fake_labels() -> Vocabulary:
    """The fake tagger's labels: a real :class:`~core.vocabulary.Vocabulary` of seven tags,
    each with the threshold 0.5, and their hierarchy (``egyptian cat`` → ``cat`` → ``animal``)."""
    tags = ("animal", "cat", "coffee mug", "container", "cup", "dog", "egyptian cat")
    return Vocabulary(tags, np.full(len(tags), 0.5, np.float32), ("general",) * len(tags), dict(FAKE_PARENT))


class FakeTagger:
    """A tagger with the real interface that scores by dominant colour (decoding with imageio);
    its labels keep the tags at or above their thresholds, as the real tagger's do."""

    model_name = "fake-colour"
    model_version = "1"
    # every tag's score by colour; at the thresholds of 0.5: red animal, cat, egyptian cat;
    # blue cup, coffee mug (and container below its threshold: every cup is one); green animal, dog
    SCORES: ClassVar[dict[str, dict[str, float]]] = {
        "red": {"animal": 0.95, "cat": 0.93, "egyptian cat": 0.81, "dog": 0.3},
        "blue": {"cup": 0.84, "coffee mug": 0.77, "container": 0.4},
        "green": {"animal": 0.9, "dog": 0.66, "cat": 0.2},
    }

    def __init__(self):
        self.labels = fake_labels()
        self.tagged: list[str] = []  # shared with the copies with_thresholds makes

    with_thresholds = tagging.Tagger.with_thresholds  # the real one: a copy with other labels

    def tag_images(self, items):
        for key, data, name in items:
            try:
                if isinstance(data, Path):  # as the real tagger: bytes, a path or a function
                    data = data.read_bytes()
                elif callable(data):
                    data = data()
                rgb, info = imageio.decode(data, name)
            except imageio.ImageError as exc:
                yield TagResult(key, name, error=exc)
                continue
            self.tagged.append(name)
            r, g, b = rgb.reshape(-1, 3).mean(axis=0)
            colour = "red" if r > max(g, b) else "blue" if b > max(r, g) else "green"
            scores = np.array([[self.SCORES[colour].get(tag, 0.0) for tag in self.labels.tags]], np.float32)
            yield TagResult(key, name, tags=self.labels.select(scores)[0], info=info)


@pytest.fixture
def fake_tagger(monkeypatch) -> FakeTagger:
    """Replaces the process-wide tagger (``serving.current.get_tagger``) with a FakeTagger."""
    fake = FakeTagger()
    monkeypatch.setattr(tagging, "get_tagger", lambda settings=None: fake)
    return fake


PASSWORD = "not-a-real-password-42"


def make_user(django_user_model, username: str, role: str | None):
    """A user with a password and, unless ``role`` is None, the group of that role."""
    from catalog.roles import assign_role

    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    if role:
        assign_role(user, role)
    return user


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def user(django_user_model):
    """alice, a content manager: uploads and reviews."""
    return make_user(django_user_model, "alice", "content_manager")


@pytest.fixture
def end_user(django_user_model):
    """bob, an end user: searches, views and downloads."""
    return make_user(django_user_model, "bob", "end_user")


@pytest.fixture
def client_for(django_user_model):
    """``client_for(username, role)``: an API client with the token of a new user of that role
    (``None``: a user with no role; ``"superuser"``: a superuser without a role)."""

    def make(username: str, role: str | None) -> APIClient:
        if role == "superuser":
            return token_client(django_user_model.objects.create_superuser(username, password=PASSWORD))
        return token_client(make_user(django_user_model, username, role))

    return make


@pytest.fixture
def viewer(end_user) -> Client:
    """bob's browser: an end user, signed in to the web pages."""
    client = Client()
    client.force_login(end_user)
    return client


@pytest.fixture
def client_with_token(user) -> APIClient:
    """An API client sending alice's (a content manager's) token."""
    return token_client(user)


@pytest.fixture
def reader(end_user) -> APIClient:
    """An API client sending bob's (an end user's) token."""
    return token_client(end_user)


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def tagged(image, user):
    """Three tagged assets with every kind of tag row, by colour name.

    red (model net:1): animal 0.95, cat 0.93 accepted, egyptian cat 0.81 rejected, sofa added by alice;
    blue (net:1): cup 0.84, coffee mug 0.77; green (net:2): animal 0.9, dog 0.66.
    """
    from catalog import services

    assets = {}
    rows = {
        "red": ("1", [TagScore("animal", 0.95), TagScore("cat", 0.93), TagScore("egyptian cat", 0.81)]),
        "blue": ("1", [TagScore("cup", 0.84), TagScore("coffee mug", 0.77)]),
        "green": ("2", [TagScore("animal", 0.9), TagScore("dog", 0.66)]),
    }
    for seed, (colour, (version, tags)) in enumerate(rows.items()):
        asset, _ = services.ingest(image(colour, seed=seed), f"{colour}.png")
        services.record_tags(asset, tags, "net", version, parents=fake_labels().parents)
        assets[colour] = asset
    services.review(assets["red"], "cat", "accept", user)
    services.review(assets["red"], "egyptian cat", "reject", user)
    services.review(assets["red"], "sofa", "add", user)
    for asset in assets.values():
        asset.refresh_from_db()
    return assets


@pytest.fixture
def tag_map(tmp_path, settings):
    """The ImageNet-only tagger (no starter model) with a tag map whose thresholds are known."""
    from core import tagmap

    folder = tmp_path / "tagmap"
    folder.mkdir()
    for name in (tagmap.CLASS_FILE, tagmap.HIERARCHY_FILE):
        (folder / name).write_bytes((tagmap.DATA_DIR / name).read_bytes())
    (folder / tagmap.THRESHOLD_FILE).write_text(
        "tag,threshold,reason\n*,0.25,default\n**,0.35,default\nanimal,0.5,hand-set\n"
        "tabby cat,off,below_target_precision\n"
    )
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, tagmap_dir=folder, starter=False)
    return folder
