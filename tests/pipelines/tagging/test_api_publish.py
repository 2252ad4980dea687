"""REST API uploads go through RabbitMQ (the real one); with the broker down they stay pending.

The queue and the broker the catalog publishes to come from its one settings object
(``django.conf.settings.IMGTAG``), not from the environment: :func:`catalog_on` sets them there.
"""

import dataclasses
import json
import time

import cv2
import pytest
import skimage.data
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from core.settings import Settings


def catalog_on(settings, env, **changes) -> Settings:
    """Point the catalog's settings object at ``env``'s installation and queue, uploads queued."""
    settings.IMGTAG = dataclasses.replace(Settings.from_env(env.vars), upload_tagging="queue", **changes)
    return settings.IMGTAG


def png(image) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


@pytest.mark.django_db
def test_upload_publishes_a_tagging_message_or_stays_pending(env, settings, monkeypatch, django_user_model):
    monkeypatch.setenv("IMGTAG_QUEUE", "not.this.queue")  # the environment no longer counts: the object does
    client = APIClient()
    from catalog.roles import CONTENT_MANAGER, assign_role

    uploader = django_user_model.objects.create_user("uploader")
    assign_role(uploader, CONTENT_MANAGER)  # uploading needs the role
    client.force_authenticate(uploader)

    catalog_on(settings, env, amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")  # the broker is down
    down = client.post("/api/assets/", {"files": SimpleUploadedFile("a.png", png(skimage.data.coffee()))})
    assert down.status_code == 201 and down.json()["assets"][0]["status"] == "pending"

    catalog_on(settings, env)
    up = client.post("/api/assets/", {"files": SimpleUploadedFile("b.png", png(skimage.data.chelsea()))})
    assert up.status_code == 201
    asset = up.json()["assets"][0]
    assert asset["status"] == "pending"  # a worker tags it

    connection, channel = env.channel()
    method, properties, body = channel.basic_get(env.queue, auto_ack=True)
    connection.close()
    message = json.loads(body)
    assert message["asset_id"] == asset["id"] and message["reason"] == "upload" and message["schema"] == 1
    assert properties.delivery_mode == 2  # persistent
    assert env.depth(env.queue) == 0  # nothing was published for the upload made while it was down


@pytest.mark.django_db
def test_a_queue_that_refuses_publishes_leaves_the_upload_pending_not_an_error(
    env, settings, django_user_model
):
    """RabbitMQ nacks publishes to a quorum queue that is starting or full (reject-publish):
    the upload is kept, pending, for ``imgtag requeue --pending``; no 500."""
    import subprocess

    imgtag = catalog_on(settings, env)
    from catalog.roles import CONTENT_MANAGER, assign_role
    from core import broker

    broker.Publisher(imgtag).close()  # the queue exists
    policy = f"refuse-{env.queue}"
    pattern = "^" + env.queue.replace(".", r"\.") + "$"
    subprocess.run(
        ["rabbitmqctl", "set_policy", "--apply-to", "queues", policy, pattern,
         '{"max-length": 0, "overflow": "reject-publish"}'],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        # A policy takes effect a moment after it is set: publish until the broker refuses.
        refused, deadline = None, time.monotonic() + 30
        while refused is None and time.monotonic() < deadline:
            with broker.Publisher(imgtag) as publisher:
                try:
                    publisher.publish_raw(b"{}", env.queue)
                except broker.BrokerUnavailable as exc:
                    refused = exc
        assert refused is not None and "refused (nacked) a message" in str(refused)
        # A quorum queue applies its limit after the fact: it took the first probe, then refuses.
        waiting = env.depth(env.queue)

        user = django_user_model.objects.create_user("uploader")
        assign_role(user, CONTENT_MANAGER)
        client = APIClient()
        client.force_authenticate(user)
        response = client.post(
            "/api/assets/", {"files": SimpleUploadedFile("c.png", png(skimage.data.astronaut()))}
        )
        assert response.status_code == 201, response.content
        assert response.json()["assets"][0]["status"] == "pending"
        assert env.depth(env.queue) == waiting  # refused, so kept for `imgtag requeue --pending`
    finally:
        subprocess.run(["rabbitmqctl", "clear_policy", policy], check=True, capture_output=True, timeout=60)


@pytest.mark.django_db
def test_the_same_bytes_uploaded_again_while_pending_publish_no_second_message(
    env, settings, django_user_model
):
    """Four uploads of one file before a worker tagged it: one message, so one inference."""
    catalog_on(settings, env)
    from catalog.roles import CONTENT_MANAGER, assign_role

    uploader = django_user_model.objects.create_user("uploader")
    assign_role(uploader, CONTENT_MANAGER)
    client = APIClient()
    client.force_authenticate(uploader)

    coffee = png(skimage.data.coffee())
    answers = [
        client.post("/api/assets/", {"files": SimpleUploadedFile(f"coffee-{i}.png", coffee)})
        for i in range(4)
    ]
    assert [a.json()["assets"][0]["duplicate"] for a in answers] == [False, True, True, True]
    assert {a.json()["assets"][0]["status"] for a in answers} == {"pending"}  # not tagged yet
    assert env.depth(env.queue) == 1
