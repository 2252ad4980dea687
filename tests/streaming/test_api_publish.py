"""REST API uploads go through RabbitMQ (the real one); with the broker down they stay pending."""

import json

import cv2
import pytest
import skimage.data
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient


def png(image) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


@pytest.mark.django_db
def test_upload_publishes_a_tagging_message_or_stays_pending(env, settings, monkeypatch, django_user_model):
    settings.IMGTAG_HOME = str(env.home)
    settings.IMGTAG_STORAGE_URL = str(env.home / "storage")
    settings.IMGTAG_UPLOAD_TAGGING = "queue"
    monkeypatch.setenv("IMGTAG_QUEUE", env.queue)
    client = APIClient()
    from catalog.roles import CONTENT_MANAGER, assign_role

    uploader = django_user_model.objects.create_user("uploader")
    assign_role(uploader, CONTENT_MANAGER)  # uploading needs the role
    client.force_authenticate(uploader)

    monkeypatch.setenv("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2F")  # the broker is down
    down = client.post("/api/assets/", {"files": SimpleUploadedFile("a.png", png(skimage.data.coffee()))})
    assert down.status_code == 201 and down.json()["assets"][0]["status"] == "pending"

    monkeypatch.setenv("IMGTAG_AMQP_URL", env.vars["IMGTAG_AMQP_URL"])
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
