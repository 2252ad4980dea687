"""The catalog's one settings object: Django's settings are derived from it, and an override of it
(``settings.IMGTAG``) reaches what the catalog calls, the broker and the tagger, not only the views."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.conf import imgtag_settings
from catalog.models import Asset
from core import broker
from serving import current
from tests.catalog.test_api import post_files, upload

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


class RecordingPublisher:
    """Stands in for :class:`core.broker.Publisher`: keeps the settings it was given and the messages."""

    made: list = []

    def __init__(self, settings):
        self.settings = settings
        self.messages = []
        RecordingPublisher.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def publish_many(self, messages):
        self.messages.extend(messages)
        return len(self.messages)


def test_an_override_of_the_queue_reaches_the_publisher(client_with_token, image, settings, monkeypatch):
    RecordingPublisher.made = []
    monkeypatch.setattr(broker, "Publisher", RecordingPublisher)
    monkeypatch.setenv("IMGTAG_QUEUE", "the.environments.queue")  # read once, at start-up: no longer counts
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, upload_tagging="queue", queue="overridden.queue")

    response = post_files(client_with_token, [upload("red.png", image("red"))])

    assert response.status_code == 201, response.content
    [publisher] = RecordingPublisher.made
    assert publisher.settings is imgtag_settings() and publisher.settings.queue == "overridden.queue"
    [message] = publisher.messages
    assert message.asset_id == Asset.objects.get().pk


def test_an_override_of_upload_tagging_and_the_tag_map_reaches_the_tagger(
    client_with_token, image, settings, monkeypatch, fake_tagger, tmp_path
):
    asked = []
    monkeypatch.setattr(current, "get_tagger", lambda settings: asked.append(settings) or fake_tagger)
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, upload_tagging="inprocess", tagmap_dir=tmp_path)

    response = post_files(client_with_token, [upload("red.png", image("red"))])

    assert response.status_code == 201, response.content
    assert asked == [imgtag_settings()] and asked[0].tagmap_dir == tmp_path
    assert Asset.objects.get().status == Asset.Status.TAGGED


def run_django(code: str, home: Path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMGTAG_", "DJANGO_", "DATABASE_URL"))}
    clean.update(IMGTAG_HOME=str(home), PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="catalog.settings")
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; {code}"],
        env={**clean, **env}, cwd=home.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_django_settings_are_derived_from_the_one_object(tmp_path):
    done = run_django(
        "print(settings.ALLOWED_HOSTS, settings.HTTPS, settings.SECURE_SSL_REDIRECT,"
        " settings.REST_FRAMEWORK['NUM_PROXIES'], settings.STATIC_ROOT, settings.IMGTAG.web.allowed_hosts)",
        tmp_path / "home",
        IMGTAG_ALLOWED_HOSTS="tags.example.com",
        IMGTAG_HTTPS="on",
        IMGTAG_NUM_PROXIES="2",
        IMGTAG_STATIC_ROOT=str(tmp_path / "static"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "['tags.example.com']", "True", "True", "2", str(tmp_path / "static"), "('tags.example.com',)",
    ]  # fmt: skip


def test_a_bad_variable_stops_django_with_a_message_naming_it(tmp_path):
    done = run_django("print('started')", tmp_path / "home", IMGTAG_UPLOAD_TAGGING="sometimes")
    assert done.returncode != 0 and "started" not in done.stdout
    assert "UsageError" in done.stderr or "SettingsError" in done.stderr
    assert "IMGTAG_UPLOAD_TAGGING='sometimes': expected one of queue, inprocess" in done.stderr
