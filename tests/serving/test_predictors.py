"""Predictor clients: in process, TF Serving REST and gRPC give the same scores through one interface.

TF Serving itself is a stand-in (``standin.py``) speaking its REST and gRPC protocols over real
tiny SavedModels promoted into a real model repository: version 1 (``previous``) and version 2
(``champion``) score differently, so label routing is observable.
"""

import dataclasses
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from core.errors import UsageError
from core.settings import Settings
from core.vocabulary import Vocabulary
from serving.export import INPUT_KEY, OUTPUT_KEY
from serving.predictors import (
    SIGNATURE_NAME,
    GrpcPredictor,
    InProcessPredictor,
    Predictor,
    RestPredictor,
    ServingError,
    ServingSettings,
    ServingUnavailable,
    predictor_from_settings,
    tensor_values,
    vocabulary_from_repository,
)
from serving.repository import ModelRepository
from tests.serving.tiny_model import TAGS, tiny_saved_model

ROOT = Path(__file__).resolve().parents[2]
NAME = "imgtag-tagger"


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    """A model repository holding version 1 (``previous``, scale 1) and 2 (``champion``, scale 0.5)."""
    tmp = tmp_path_factory.mktemp("predictors")
    repo = ModelRepository(tmp / "models", NAME)
    repo.promote(tiny_saved_model(tmp / "v1", 1.0), {"run_id": "r1"})
    repo.promote(tiny_saved_model(tmp / "v2", 0.5), {"run_id": "r2"})
    return Settings.from_env({"IMGTAG_HOME": str(tmp), "IMGTAG_MODEL_BASE": str(tmp / "models")})


@pytest.fixture(scope="session")
def repo(settings) -> ModelRepository:
    return ModelRepository(settings.model_base, NAME)


@pytest.fixture(scope="session")
def images() -> list[bytes]:
    """Real encoded images: a reddish PNG, a noisy JPEG, a 16x12 gradient PNG."""
    rng = np.random.default_rng(7)
    red = np.zeros((10, 10, 3), np.uint8)
    red[:] = (30, 60, 200)  # BGR
    noise = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    gradient = np.dstack([np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (12, 1))] * 3)
    gradient[..., 0] //= 3
    encoded = [
        cv2.imencode(".png", red)[1],
        cv2.imencode(".jpg", noise)[1],
        cv2.imencode(".png", gradient)[1],
    ]
    return [e.tobytes() for e in encoded]


@pytest.fixture(scope="session")
def served(repo):
    from tests.serving.standin import Served

    return Served(NAME, {1: repo.path(1), 2: repo.path(2)}, {"champion": 2, "previous": 1})


@pytest.fixture(autouse=True)
def healthy(request):
    """Every test starts with a stand-in that answers at once and counts from zero."""
    if "served" in request.fixturenames:
        served = request.getfixturevalue("served")
        served.fail_first, served.delay, served.calls = 0, 0.0, 0
    yield


@pytest.fixture(scope="session")
def rest_server(served):
    from tests.serving.standin import RestStandin

    with RestStandin(served) as server:
        yield server


@pytest.fixture(scope="session")
def grpc_server(served):
    from tests.serving.standin import GrpcStandin

    with GrpcStandin(served) as server:
        yield server


@pytest.fixture(scope="session")
def inprocess(repo) -> dict[int, InProcessPredictor]:
    return {1: InProcessPredictor(repo.path(1)), 2: InProcessPredictor(repo.path(2))}


@pytest.fixture()
def remote(request, rest_server, grpc_server, settings):
    """``remote(kind, **kwargs)``: a REST or gRPC predictor of the stand-in, closed after the test."""
    made = []
    vocabulary = vocabulary_from_repository(settings)

    def make(kind: str, **kwargs):
        kwargs.setdefault("vocabulary", vocabulary)
        kwargs.setdefault("backoff", 0.01)
        kwargs.setdefault("timeout", 10.0)
        name = kwargs.pop("model_name", NAME)
        if kind == "rest":
            predictor = RestPredictor(kwargs.pop("url", rest_server.url), name, **kwargs)
        else:
            predictor = GrpcPredictor(kwargs.pop("url", grpc_server.target), name, **kwargs)
        made.append(predictor)
        return predictor

    yield make
    for predictor in made:
        predictor.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KINDS = ["rest", "grpc"]


def test_three_predictors_agree(inprocess, remote, images, served):
    local = inprocess[2]
    rest = remote("rest", version_label="champion")
    grpc_ = remote("grpc", version_label="champion")
    expected = local.scores(images)
    assert expected.shape == (3, 3) and expected.dtype == np.float32
    assert expected[0].argmax() == TAGS.index("red")  # the reddish PNG (BGR 30, 60, 200), decoded as RGB
    for predictor in (local, rest, grpc_):
        assert isinstance(predictor, Predictor)
        assert predictor.vocabulary.tags == TAGS
        assert predictor.name == NAME
        scores = predictor.scores(images)
        assert scores.dtype == np.float32
        np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert local.version == 2 and rest.version == "champion"
    assert grpc_.version == 2  # reported by the server
    assert served.calls == 2


def test_rest_reads_dict_per_row_predictions(served, inprocess, images, settings):
    from tests.serving.standin import RestStandin

    vocabulary = vocabulary_from_repository(settings)
    with (
        RestStandin(served, named_outputs=True) as server,
        RestPredictor(server.url, NAME, vocabulary=vocabulary) as rest,
    ):
        np.testing.assert_allclose(rest.scores(images), inprocess[2].scores(images), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_version_routing(kind, remote, inprocess, images):
    champion = remote(kind, version_label="champion").scores(images)
    previous = remote(kind, version_label="previous").scores(images)
    pinned = remote(kind, version=1).scores(images)
    latest = remote(kind).scores(images)
    np.testing.assert_allclose(champion, inprocess[2].scores(images), atol=1e-5)
    np.testing.assert_allclose(previous, inprocess[1].scores(images), atol=1e-5)
    np.testing.assert_allclose(pinned, previous, atol=1e-6)
    np.testing.assert_allclose(latest, champion, atol=1e-6)
    assert not np.allclose(champion, previous)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_label_is_an_error_not_retried(kind, remote, images, served):
    with pytest.raises(ServingError, match="no-such-label"):
        remote(kind, version_label="no-such-label", retries=3).scores(images)
    assert served.calls == 1


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_model_is_not_retried(kind, remote, images, served):
    with pytest.raises(ServingError, match="other-model") as caught:
        remote(kind, model_name="other-model", retries=3).scores(images)
    assert not isinstance(caught.value, ServingUnavailable)
    assert served.calls == 1


@pytest.mark.parametrize("kind", KINDS)
def test_retries_recover(kind, remote, images, served, inprocess):
    served.fail_first = 2
    scores = remote(kind, version_label="champion", retries=2).scores(images)
    np.testing.assert_allclose(scores, inprocess[2].scores(images), atol=1e-5)
    assert served.calls == 3


@pytest.mark.parametrize("kind", KINDS)
def test_retries_give_up(kind, remote, images, served):
    served.fail_first = 10
    with pytest.raises(ServingUnavailable, match="after 3 attempts"):
        remote(kind, retries=2).scores(images)
    assert served.calls == 3


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_unavailable_and_bounded(kind, remote, images, served):
    served.delay = 1.0
    started = time.monotonic()
    with pytest.raises(ServingUnavailable):
        remote(kind, timeout=0.2, retries=1).scores(images)
    assert time.monotonic() - started < 0.9  # two attempts of 0.2 s and a short backoff
    assert served.calls == 2


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_port_names_the_address(kind, remote, images):
    port = closed_port()
    url = f"http://127.0.0.1:{port}" if kind == "rest" else f"127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ServingUnavailable, match=re.escape(f"127.0.0.1:{port}")) as caught:
        remote(kind, url=url, timeout=2.0, retries=1).scores(images)
    assert time.monotonic() - started < 5
    assert "IMGTAG_SERVING_URL" in str(caught.value)


def test_rest_sends_the_named_b64_row_format(remote, images):
    sent = []

    class Recording(requests.Session):
        def post(self, url, **kwargs):
            sent.append((url, kwargs))
            return super().post(url, **kwargs)

    rest = remote("rest", version_label="champion", session=Recording())
    rest.scores(images[:1])
    url, kwargs = sent[0]
    assert url.endswith(f"/v1/models/{NAME}/labels/champion:predict")
    assert kwargs["json"]["signature_name"] == "serving_default"
    (instance,) = kwargs["json"]["instances"]
    assert list(instance) == [INPUT_KEY] and list(instance[INPUT_KEY]) == ["b64"]


def test_grpc_request_carries_the_export_contract(remote, images):
    from tensorflow.core.framework import types_pb2

    request = remote("grpc", version_label="champion").request(images)
    assert request.model_spec.name == NAME
    assert request.model_spec.signature_name == SIGNATURE_NAME
    assert request.model_spec.version_label == "champion"
    tensor = request.inputs[INPUT_KEY]
    assert tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in tensor.tensor_shape.dim] == [3]
    assert list(tensor.string_val) == images
    assert remote("grpc", version=4).request(images).model_spec.version.value == 4


@pytest.mark.parametrize("kind", KINDS)
def test_requests_are_counted_under_the_predictor_the_alert_rules_name(kind, remote, images):
    """infra/k8s/base/monitoring/rules count ``predictor="rest"`` and ``predictor="grpc"``."""
    from core import metrics

    def ok() -> float:
        return metrics.SERVING_REQUESTS.labels(predictor=kind, outcome="ok")._value.get()

    before = ok()
    remote(kind).scores(images[:1])
    assert ok() == before + 1


def test_stand_in_rejects_a_malformed_body(rest_server, served):
    response = requests.post(f"{rest_server.url}/v1/models/{NAME}:predict", data=b"{not json", timeout=5)
    assert response.status_code == 400 and "JSON" in response.json()["error"]


@pytest.mark.parametrize("kind, status", [("rest", "HTTP 400"), ("grpc", "INVALID_ARGUMENT")])
def test_undecodable_image_is_a_client_error_not_retried(kind, status, remote, images, served):
    with pytest.raises(ServingError, match=status) as caught:
        remote(kind, retries=3).scores([images[0], b"not an image"])
    assert not isinstance(caught.value, ServingUnavailable)
    assert served.calls == 1


def test_float_val_tensors_and_width_mismatch(remote, images):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in (2, 3)]
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), float_val=range(6)
    )
    np.testing.assert_array_equal(tensor_values(tensor), np.arange(6, dtype=np.float32).reshape(2, 3))
    tensor.dtype = types_pb2.DT_DOUBLE
    with pytest.raises(ServingError, match="DT_DOUBLE"):
        tensor_values(tensor)
    # an embedding as TF compresses it: int8 values widened to int32, one value for a constant
    shape = tensor_shape_pb2.TensorShapeProto(dim=dims)
    same = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT8, tensor_shape=shape, int_val=[-7])
    np.testing.assert_array_equal(tensor_values(same, "embedding"), np.full((2, 3), -7, np.int8))
    packed = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT8, tensor_shape=shape, tensor_content=np.arange(-3, 3, dtype=np.int8).tobytes()
    )
    np.testing.assert_array_equal(tensor_values(packed, "embedding"), np.arange(-3, 3).reshape(2, 3))
    with pytest.raises(ServingError, match="embedding tensor has dtype DT_FLOAT"):
        tensor_values(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape), "embedding")

    narrow = Vocabulary(("a", "b"), np.zeros(2, np.float32), ("learned",) * 2, {})
    for kind in KINDS:
        with pytest.raises(ServingError, match="vocabulary has 2 tags"):
            remote(kind, vocabulary=narrow).scores(images)


def test_empty_batch_sends_nothing(remote, inprocess, served):
    for predictor in (inprocess[2], remote("rest"), remote("grpc")):
        assert predictor.scores([]).shape == (0, 3)
    assert served.calls == 0


def test_vocabulary_from_repository(settings):
    assert vocabulary_from_repository(settings).tags == TAGS
    assert vocabulary_from_repository(settings, version=1).tags == TAGS
    with pytest.raises(ServingError, match="no-such-label"):
        vocabulary_from_repository(settings, "no-such-label")
    with pytest.raises(ServingError, match="version 9"):
        vocabulary_from_repository(settings, version=9)


def test_predictor_from_settings(settings, rest_server, grpc_server, inprocess, images):
    expected = inprocess[2].scores(images)
    local = predictor_from_settings(settings, ServingSettings.from_env({}))
    assert isinstance(local, InProcessPredictor) and local.version == 2

    rest = predictor_from_settings(
        settings,
        ServingSettings.from_env({"IMGTAG_PREDICTOR": "rest", "IMGTAG_SERVING_URL": rest_server.url}),
    )
    assert isinstance(rest, RestPredictor)
    assert rest.url == f"{rest_server.url}/v1/models/{NAME}/labels/champion:predict"

    env = {
        "IMGTAG_PREDICTOR": "GRPC",
        "IMGTAG_SERVING_URL": grpc_server.target,
        "IMGTAG_SERVING_TIMEOUT": "3",
    }
    grpc_ = predictor_from_settings(settings, ServingSettings.from_env(env))
    assert isinstance(grpc_, GrpcPredictor) and grpc_.timeout == 3.0
    for predictor in (local, rest, grpc_):
        np.testing.assert_allclose(predictor.scores(images), expected, atol=1e-5)
    rest.close()
    grpc_.close()

    pinned = ServingSettings.from_env({"IMGTAG_PREDICTOR": "rest", "IMGTAG_SERVING_LABEL": "1"})
    assert (pinned.label, pinned.version, pinned.url) == (None, 1, "http://127.0.0.1:8501")
    assert isinstance(predictor_from_settings(settings, pinned), RestPredictor)


def test_predictor_from_settings_follows_the_settings_serving_section(settings, monkeypatch):
    monkeypatch.setenv("IMGTAG_PREDICTOR", "rest")  # the environment is read by Settings.from_env, not here
    grpc_ = ServingSettings.from_env(
        {"IMGTAG_PREDICTOR": "grpc", "IMGTAG_SERVING_URL": "grpc://tf-serving:8500"}
    )
    predictor = predictor_from_settings(dataclasses.replace(settings, serving=grpc_))
    assert isinstance(predictor, GrpcPredictor) and predictor.target == "tf-serving:8500"
    predictor.close()
    with pytest.raises(UsageError, match="IMGTAG_PREDICTOR='torchserve'"):
        Settings.from_env({"IMGTAG_PREDICTOR": "torchserve"})


@pytest.mark.parametrize(
    "env, message",
    [
        ({"IMGTAG_PREDICTOR": "tfserving"}, "IMGTAG_PREDICTOR"),
        ({"IMGTAG_PREDICTOR": "rest", "IMGTAG_SERVING_URL": "tf-serving:8501"}, "http://"),
        ({"IMGTAG_PREDICTOR": "grpc", "IMGTAG_SERVING_URL": "http://tf-serving:8500"}, "host:port"),
        ({"IMGTAG_PREDICTOR": "grpc", "IMGTAG_SERVING_URL": "tf-serving"}, "host:port"),
        ({"IMGTAG_SERVING_TIMEOUT": "soon"}, "IMGTAG_SERVING_TIMEOUT"),
        ({"IMGTAG_SERVING_TIMEOUT": "0"}, "positive"),
        ({"IMGTAG_SERVING_TIMEOUT": "nan"}, "positive"),
        ({"IMGTAG_SERVING_LABEL": " "}, "IMGTAG_SERVING_LABEL"),
    ],
)
def test_bad_serving_settings(env, message):
    with pytest.raises(UsageError, match=message):
        ServingSettings.from_env(env)


def test_both_label_and_version_is_an_error(settings):
    vocabulary = vocabulary_from_repository(settings)
    with pytest.raises(ValueError, match="not both"):
        RestPredictor("http://127.0.0.1:1", NAME, version_label="champion", version=2, vocabulary=vocabulary)


def test_signature_matches_what_the_clients_send(repo):
    cli = Path(sys.executable).parent / "saved_model_cli"
    out = subprocess.run(
        [
            str(cli),
            "show",
            "--dir",
            str(repo.path(2)),
            "--tag_set",
            "serve",
            "--signature_def",
            SIGNATURE_NAME,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    inputs = dict(re.findall(r"inputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)", out))
    outputs = dict(re.findall(r"outputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)", out))
    assert inputs == {INPUT_KEY: "DT_STRING"}, out
    assert outputs == {OUTPUT_KEY: "DT_FLOAT"}, out
    assert (INPUT_KEY, OUTPUT_KEY) == ("images", "scores")
    assert re.search(r"inputs\['images'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", out), out


def test_module_imports_without_tensorflow():
    code = "import sys, serving.predictors; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
