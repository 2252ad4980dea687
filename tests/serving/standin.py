"""A stand-in for TF Serving in tests: its REST and gRPC predict protocols over a real SavedModel.

The real ``tensorflow_model_server`` binary cannot be installed here, so these servers speak the
same wire protocols (URL layout, JSON row format with ``{"b64": ...}``, ``{"error": ...}``
bodies, ``PredictionService/Predict`` with TensorProtos and gRPC status codes) and run the
model's ``serving_default`` signature with ``tf.saved_model.load``. Both bind 127.0.0.1 on a
free port and can be told to fail the first N requests or to answer slowly.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from core.tf_runtime import import_tensorflow

tf = import_tensorflow()

SIGNATURE = "serving_default"
_STATUS_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([0-9]+))?$")
_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/labels/([^/:]+)|/versions/([0-9]+))?:predict$")


class Served:
    """The models a stand-in serves: ``{name: {version: signature}}`` plus version labels."""

    def __init__(self, name: str, versions: dict[int, Path], labels: dict[str, int]):
        self.name = name
        self.signatures = {}
        self._loaded = []
        for version, path in versions.items():
            loaded = tf.saved_model.load(str(path))
            self._loaded.append(loaded)
            self.signatures[version] = loaded.signatures[SIGNATURE]
        self.labels = dict(labels)
        self.lock = threading.Lock()
        self.calls = 0  # predict requests received, failed ones included
        self.fail_first = 0  # fail this many more requests as unavailable
        self.delay = 0.0  # seconds to wait before answering
        self.load_errors: dict[int, str] = {}  # versions whose load failed, with the error

    def resolve(self, name: str, label: str | None, version: int | None) -> tuple[int, object]:
        """The version and signature asked for; LookupError with TF Serving's kind of message."""
        if name != self.name:
            raise LookupError(f"Servable not found for request: Latest({name})")
        if label is not None:
            if label not in self.labels:
                raise LookupError(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if version is None:
            version = max(self.signatures)
        if version not in self.signatures:
            raise LookupError(f"Servable not found for request: Specific({name}, {version})")
        return version, self.signatures[version]

    def load(self, version: int, path: Path) -> None:
        """Load another version, as TF Serving does after reading a new ``models.config``."""
        loaded = tf.saved_model.load(str(path))
        with self.lock:
            self._loaded.append(loaded)
            self.signatures[version] = loaded.signatures[SIGNATURE]

    def status(self, name: str, version: int | None) -> dict:
        """TF Serving's ``GetModelStatus`` answer; LookupError for an unknown model or version."""
        if name != self.name:
            raise LookupError(f"Could not find any versions of model {name}")
        if self.load_errors.get(version):
            states = [(version, "END", "UNKNOWN", self.load_errors[version])]
        elif version is None:
            states = [(v, "AVAILABLE", "OK", "") for v in sorted(self.signatures)]
        elif version in self.signatures:
            states = [(version, "AVAILABLE", "OK", "")]
        else:
            raise LookupError(f"Could not find version {version} of model {name}")
        return {
            "model_version_status": [
                {"version": str(v), "state": state, "status": {"error_code": code, "error_message": message}}
                for v, state, code, message in states
            ]
        }

    def admit(self) -> bool:
        """Count a request; False while it should fail as unavailable. Sleeps ``delay`` first."""
        with self.lock:
            self.calls += 1
            failing = self.fail_first > 0
            if failing:
                self.fail_first -= 1
        if self.delay:
            time.sleep(self.delay)
        return not failing


# ---- REST ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: RestStandin

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Model status: ``GET /v1/models/<name>[/versions/<v>]``."""
        match = _STATUS_PATH.match(self.path)
        if not match:
            self._reply(404, {"error": f"Malformed request: GET {self.path}"})
            return
        name, number = match.groups()
        try:
            self._reply(200, self.server.served.status(name, None if number is None else int(number)))
        except LookupError as exc:
            self._reply(404, {"error": str(exc)})

    def do_POST(self) -> None:
        served = self.server.served
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not served.admit():
            self._reply(503, {"error": "Service temporarily unavailable (stand-in told to fail)"})
            return
        match = _PREDICT_PATH.match(self.path)
        if not match:
            self._reply(404, {"error": f"Malformed request: POST {self.path}"})
            return
        name, label, number = match.groups()
        try:
            _version, signature = served.resolve(name, label, None if number is None else int(number))
        except LookupError as exc:
            self._reply(404, {"error": str(exc)})
            return
        try:
            request = json.loads(body)
            if request.get("signature_name", SIGNATURE) != SIGNATURE:
                raise ValueError(f'Serving signature name: "{request["signature_name"]}" not found')
            images = [_instance_bytes(instance) for instance in request["instances"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": f"JSON Parse error: {exc}"})
            return
        try:
            outputs = signature(images=tf.constant(images, tf.string))
        except tf.errors.InvalidArgumentError as exc:  # an undecodable image, as TF Serving answers it
            self._reply(400, {"error": exc.message})
            return
        rows = outputs["scores"].numpy().tolist()
        if "embedding" in outputs:  # several outputs: TF Serving answers a dict per instance
            rows = [
                {"scores": row, "embedding": e}
                for row, e in zip(rows, outputs["embedding"].numpy().tolist(), strict=True)
            ]
        elif self.server.named_outputs:
            rows = [{"scores": row} for row in rows]
        self._reply(200, {"predictions": rows})


def _instance_bytes(instance) -> bytes:
    if isinstance(instance, dict) and "images" in instance:
        instance = instance["images"]
    if not (isinstance(instance, dict) and set(instance) == {"b64"}):
        raise ValueError(f"expected {{'images': {{'b64': ...}}}} or {{'b64': ...}}, got {instance!r:.80}")
    return base64.b64decode(instance["b64"], validate=True)


class RestStandin(ThreadingHTTPServer):
    """TF Serving's REST predict API on 127.0.0.1, a free port; ``url`` is its base URL."""

    daemon_threads = True

    def __init__(self, served: Served, *, named_outputs: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.served = served
        self.named_outputs = named_outputs
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timed out) before a slow answer is expected here; stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()


# ---- gRPC ------------------------------------------------------------------------------------


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, served: Served):
        self.served = served

    def Predict(self, request, context):
        served = self.served
        if not served.admit():
            context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in told to fail")
        spec = request.model_spec
        label = spec.version_label or None
        number = spec.version.value if spec.HasField("version") else None
        try:
            version, signature = served.resolve(spec.name, label, number)
        except LookupError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if spec.signature_name not in ("", SIGNATURE):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"signature {spec.signature_name} not found")
        if set(request.inputs) != {"images"}:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"expected input 'images', got {sorted(request.inputs)}"
            )
        images = tf.make_ndarray(request.inputs["images"])
        if images.dtype != object or images.ndim != 1:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"images: expected DT_STRING [n], got {images.dtype}"
            )
        try:
            outputs = signature(images=tf.constant(list(images), tf.string))
        except tf.errors.InvalidArgumentError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        scores = outputs["scores"].numpy()
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = SIGNATURE
        response.outputs["scores"].CopyFrom(tf.make_tensor_proto(np.asarray(scores, np.float32)))
        if "embedding" in outputs:
            response.outputs["embedding"].CopyFrom(tf.make_tensor_proto(outputs["embedding"].numpy()))
        return response


class GrpcStandin:
    """TF Serving's gRPC PredictionService on 127.0.0.1, a free port; ``target`` is ``host:port``."""

    def __init__(self, served: Served):
        self.served = served
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(served), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.stop(grace=0).wait(5)
