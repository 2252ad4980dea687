"""Predictor clients with one interface: the SavedModel in process, TF Serving over REST, or gRPC.

Every predictor satisfies :class:`Predictor`: ``scores(images)`` takes encoded image files
(JPEG, PNG ...) and returns ``float32 (n, tags)`` scores whose columns follow
``vocabulary.tags``; ``vocabulary`` turns those scores into tags; ``name`` and ``version`` say
which model produced them (the tag provenance).

- :class:`InProcessPredictor` loads an exported SavedModel (:class:`serving.export.LoadedModel`)
  and runs its ``serving_default`` signature in this process. The one-machine default.
- :class:`RestPredictor` posts ``{"signature_name": "serving_default", "instances":
  [{"images": {"b64": ...}}, ...]}`` to ``{base_url}/v1/models/{name}[/labels/{label} |
  /versions/{v}]:predict`` and reads ``{"predictions": [[...], ...]}`` (or the dict-per-row
  form ``[{"scores": [...], "embedding": [...]}]`` TF Serving uses for signatures with several
  outputs).
- :class:`GrpcPredictor` calls ``PredictionService/Predict`` with the images as one
  ``DT_STRING`` tensor under ``images`` and reads the ``scores`` tensor (and ``embedding``).

The remote clients' :meth:`~_RemotePredictor.scores_and_embeddings` also returns the exported
model's ``embedding`` output (:mod:`core.embedding`) when the served model has it.

The remote clients retry a bounded number of times, with exponential backoff, only on
failures that may pass: connection errors, timeouts, HTTP 5xx and 429, gRPC UNAVAILABLE and
DEADLINE_EXCEEDED. When the server still cannot be reached they raise
:class:`ServingUnavailable` (naming the URL or target and what to check); any other answer
the server refuses raises :class:`ServingError` with the server's message.

Vocabulary: TF Serving serves scores, not assets, so a remote predictor reads the tag
vocabulary from the model repository on the shared volume (:func:`vocabulary_from_repository`:
the ``assets/tags.csv`` of the version the label points at in ``models.config``). The client
checks that the served model returns as many columns as that vocabulary has tags, which
catches a server still serving another version with a different vocabulary.

Which predictor :func:`predictor_from_settings` builds is set by ``settings.serving``
(:class:`core.settings.ServingSettings`: ``IMGTAG_PREDICTOR`` and the ``IMGTAG_SERVING_*``
variables, listed in :mod:`core.settings`).

Importing this module does not import TensorFlow; the in-process and gRPC predictors import
it when built (``tensorflow_serving.apis`` needs it).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
import requests

from core import metrics
from core.embedding import EMBEDDING_KEY
from core.errors import UnavailableError, UsageError
from core.settings import ServingSettings  # re-exported: serving.predictors.ServingSettings
from core.tf_runtime import import_tensorflow
from core.vocabulary import Vocabulary
from serving.export import INPUT_KEY, OUTPUT_KEY, LoadedModel
from serving.repository import CHAMPION, ModelRepository, RepositoryError

log = logging.getLogger(__name__)

SIGNATURE_NAME = "serving_default"
RETRY_HTTP_STATUS = frozenset({429, 500, 502, 503, 504})
UNAVAILABLE_HTTP_STATUS = frozenset({429, 502, 503, 504})
MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024

_T = TypeVar("_T")


class ServingError(UsageError, RuntimeError):
    """The model server answered but refused the request (unknown model or label, bad input ...)."""


class ServingUnavailable(UnavailableError, RuntimeError):
    """The model server could not be reached, or stayed overloaded, after the retries."""


@runtime_checkable
class Predictor(Protocol):
    """Scores for encoded images, and what is needed to read and attribute them.

    Attributes:
        vocabulary: the tags, in the order of the score columns, with their thresholds.
        name: the model's name (in the repository and in TF Serving).
        version: the version number when known, else the version label asked for.
    """

    vocabulary: Vocabulary
    name: str
    version: int | str | None

    def scores(self, images: list[bytes]) -> np.ndarray:
        """``float32 (len(images), len(vocabulary.tags))`` scores for encoded images."""
        ...


def _empty(vocabulary: Vocabulary) -> np.ndarray:
    return np.zeros((0, vocabulary.output_width), np.float32)


def _check_images(images: list[bytes]) -> list[bytes]:
    images = list(images)
    if not all(isinstance(image, (bytes, bytearray, memoryview)) for image in images):
        raise TypeError("images must be encoded image files as bytes")
    return [bytes(image) for image in images]


def _check_shape(scores: np.ndarray, n: int, vocabulary: Vocabulary, where: str) -> np.ndarray:
    if scores.ndim != 2 or scores.shape[0] != n:
        raise ServingError(f"{where}: expected scores for {n} images, got shape {scores.shape}")
    if scores.shape[1] != vocabulary.output_width:
        raise ServingError(
            f"{where}: the model returns {scores.shape[1]} scores per image but the vocabulary has "
            f"{vocabulary.output_width} tags; is the server serving the version the vocabulary came from?"
        )
    return scores


def _version_spec(version_label: str | None, version: int | None) -> tuple[str | None, int | None]:
    if version_label is not None and version is not None:
        raise ValueError("give version_label or version, not both")
    if version_label is not None and not str(version_label).strip():
        raise ValueError("version_label must not be empty")
    if version is not None and int(version) < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    return version_label, None if version is None else int(version)


def _retrying(
    call: Callable[[], _T],
    *,
    retryable: Callable[[Exception], bool],
    retries: int,
    backoff: float,
    what: str,
) -> _T:
    """Run ``call``; on a retryable exception sleep ``backoff * 2**attempt`` and try again, ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == retries or not retryable(exc):
                raise
            delay = backoff * 2**attempt
            log.warning("%s failed (%s); retry %d of %d in %.2fs", what, exc, attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class InProcessPredictor:
    """An exported SavedModel run in this process.

    Args:
        saved_model_dir: the SavedModel (a numbered version directory, or any export).
    """

    def __init__(self, saved_model_dir: str | Path):
        self._model = LoadedModel(saved_model_dir)
        self.vocabulary = self._model.vocabulary
        self.name = str(self._model.info.get("name") or self._model.path.name)
        folder = self._model.path.name
        self.version: int | str | None = int(folder) if folder.isdigit() else None

    def __repr__(self) -> str:
        return f"InProcessPredictor({str(self._model.path)!r})"

    def scores(self, images: list[bytes]) -> np.ndarray:
        """``float32 (n, tags)`` scores for encoded images, in :attr:`vocabulary` order."""
        images = _check_images(images)
        if not images:
            return _empty(self.vocabulary)
        scores = np.asarray(self._model.scores(images), np.float32)
        return _check_shape(scores, len(images), self.vocabulary, str(self._model.path))


class _RemotePredictor:
    """What the REST and gRPC clients share: the one constructor (the model they ask for, the
    vocabulary of its answers, the retry budget), and closing as a context manager.

    Args:
        address: where the server is (a subclass's :meth:`_connect` checks its form).
        model_name: the model's name in TF Serving.
        version_label: ask for the version with this label (``champion``); or
        version: pin a version number; neither: the latest version the server has.
        vocabulary: the served version's vocabulary (:func:`vocabulary_from_repository`).
        timeout: seconds per attempt.
        retries: attempts after the first on failures that may pass.
        backoff: seconds before the first retry, doubled for each next one.
        **connection: the client's own connection to reuse, given to :meth:`_connect`
            (``session`` for REST, ``channel`` for gRPC).
    """

    def __init__(
        self,
        address: str,
        model_name: str,
        *,
        version_label: str | None = None,
        version: int | None = None,
        vocabulary: Vocabulary,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        **connection: Any,
    ):
        self.version_label, self._pinned = _version_spec(version_label, version)
        self.name = model_name
        self.version: int | str | None = self._pinned if self._pinned is not None else version_label
        self.vocabulary = vocabulary
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._connect(address, **connection)

    def _connect(self, address: str) -> None:
        """Check ``address`` and open the connection (the subclass's keyword arguments follow)."""
        raise NotImplementedError

    #: the ``predictor`` label of the request metrics
    kind = ""

    def close(self) -> None:
        raise NotImplementedError

    def _scores(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def scores(self, images: list[bytes]) -> np.ndarray:
        """``float32 (n, tags)`` scores for encoded images, in :attr:`vocabulary` order.

        Each call counts in ``imgtag_serving_requests_total`` by outcome and times in
        ``imgtag_serving_request_seconds`` (:mod:`core.metrics`).

        Raises:
            ServingUnavailable: the server was not reached after the retries.
            ServingError: the server refused the request, or its answer is not scores for
                these images.
        """
        return self.scores_and_embeddings(images)[0]

    def scores_and_embeddings(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`scores`, and the ``int8 (n, 256)`` embeddings (:mod:`core.embedding`) when the
        served model returns them (None otherwise): the tagger's ``predict_encoded``."""
        started = time.monotonic()
        outcome = "error"
        try:
            scores = self._scores(images)
            outcome = "ok"
            return scores
        except ServingUnavailable:
            outcome = "unavailable"
            raise
        finally:
            metrics.SERVING_REQUESTS.labels(predictor=self.kind, outcome=outcome).inc()
            metrics.SERVING_SECONDS.labels(predictor=self.kind).observe(time.monotonic() - started)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RestPredictor(_RemotePredictor):
    """TF Serving's REST predict API.

    Args:
        base_url: the server, e.g. ``http://tf-serving:8501``.
        model_name: the model's name in TF Serving.
        version_label: ask for the version with this label (``champion``); or
        version: pin a version number; neither: the latest version the server has.
        vocabulary: the served version's vocabulary (:func:`vocabulary_from_repository`).
        timeout: seconds per attempt (connect and read).
        retries: attempts after the first on connection errors, timeouts, 5xx and 429.
        backoff: seconds before the first retry, doubled for each next one.
        session: a ``requests.Session`` to use (one is created otherwise).
    """

    kind = "rest"

    def _connect(self, base_url: str, session: requests.Session | None = None) -> None:
        """Check ``base_url`` and build the predict URL for the model and version asked for."""
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r}: expected http://host:port (TF Serving's REST port)")
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        if self._pinned is not None:
            route = f"/versions/{self._pinned}"
        elif self.version_label is not None:
            route = f"/labels/{self.version_label}"
        else:
            route = ""
        self.url = f"{self.base_url}/v1/models/{self.name}{route}:predict"

    def __repr__(self) -> str:
        return f"RestPredictor({self.url!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def _scores(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """``float32 (n, tags)`` scores for encoded images, in :attr:`vocabulary` order, and
        the embeddings when the model returns them (None otherwise).

        Raises:
            ServingUnavailable: no connection, timeouts, or 429/502/503/504 after the retries.
            ServingError: any other HTTP error (the server's ``error`` message), or an answer
                that is not scores for these images.
        """
        images = _check_images(images)
        if not images:
            return _empty(self.vocabulary), None
        body = {
            "signature_name": SIGNATURE_NAME,
            "instances": [{INPUT_KEY: {"b64": base64.b64encode(image).decode("ascii")}} for image in images],
        }

        def post() -> requests.Response:
            response = self.session.post(self.url, json=body, timeout=self.timeout)
            if response.status_code in RETRY_HTTP_STATUS:
                raise _HttpStatus(response)
            return response

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, (_HttpStatus, requests.ConnectionError, requests.Timeout))

        try:
            response = _retrying(
                post, retryable=retryable, retries=self.retries, backoff=self.backoff, what=f"POST {self.url}"
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServingUnavailable(
                f"TF Serving at {self.url} could not be reached after {self.retries + 1} attempts "
                f"({type(exc).__name__}: {exc}); check that the server runs, that IMGTAG_SERVING_URL points at "
                f"its REST port (8501), and IMGTAG_SERVING_TIMEOUT ({self.timeout:g}s)"
            ) from exc
        except _HttpStatus as exc:
            response = exc.response
            if response.status_code in UNAVAILABLE_HTTP_STATUS:
                raise ServingUnavailable(
                    f"TF Serving at {self.url} answered HTTP {response.status_code} "
                    f"{_error_message(response)!r} after {self.retries + 1} attempts; check the server's "
                    "load and that the model version has finished loading"
                ) from exc
        if response.status_code >= 400:
            raise ServingError(
                f"TF Serving at {self.url}: HTTP {response.status_code}: {_error_message(response)}"
            )
        try:
            predictions = response.json()["predictions"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServingError(
                f"TF Serving at {self.url}: no predictions in the answer {response.text[:200]!r}"
            ) from exc
        scores = _check_shape(_rows_to_array(predictions, self.url), len(images), self.vocabulary, self.url)
        return scores, _rows_to_embeddings(predictions, len(images), self.url)


class _HttpStatus(Exception):
    """An HTTP answer worth retrying (5xx, 429); carries the response."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason or ""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return response.text[:500]


def _rows_to_array(predictions: Any, where: str) -> np.ndarray:
    """The ``predictions`` of TF Serving's row format as ``float32 (n, tags)``."""
    if not isinstance(predictions, list):
        raise ServingError(f"{where}: predictions is {type(predictions).__name__}, expected a list")
    rows = []
    for row in predictions:
        if isinstance(row, dict):  # several outputs: one dict per instance
            if OUTPUT_KEY not in row:
                raise ServingError(f"{where}: prediction has outputs {sorted(row)}, expected {OUTPUT_KEY!r}")
            row = row[OUTPUT_KEY]
        rows.append(row)
    try:
        array = np.asarray(rows, np.float32)
    except (ValueError, TypeError) as exc:
        raise ServingError(f"{where}: predictions are not a table of numbers: {exc}") from exc
    return array


def _rows_to_embeddings(predictions: list, n: int, where: str) -> np.ndarray | None:
    """The ``embedding`` of each row of TF Serving's row format (dict rows), or None without one."""
    if not predictions or not all(isinstance(row, dict) and EMBEDDING_KEY in row for row in predictions):
        return None
    try:
        embeddings = np.asarray([row[EMBEDDING_KEY] for row in predictions], np.int8)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ServingError(f"{where}: embeddings are not a table of int8 numbers: {exc}") from exc
    if embeddings.ndim != 2 or len(embeddings) != n:
        raise ServingError(f"{where}: expected embeddings for {n} images, got shape {embeddings.shape}")
    return embeddings


class GrpcPredictor(_RemotePredictor):
    """TF Serving's gRPC ``PredictionService/Predict``.

    Args:
        target: the server's gRPC address, ``host:port`` (e.g. ``tf-serving:8500``).
        model_name: the model's name in TF Serving.
        version_label: ask for the version with this label (``champion``); or
        version: pin a version number; neither: the latest version the server has.
        vocabulary: the served version's vocabulary (:func:`vocabulary_from_repository`).
        timeout: deadline of each attempt, in seconds.
        retries: attempts after the first on UNAVAILABLE and DEADLINE_EXCEEDED.
        backoff: seconds before the first retry, doubled for each next one.
        channel: a gRPC channel to use (an insecure channel to ``target`` otherwise).

    After a call, :attr:`version` is the version number the server reports having used.
    """

    kind = "grpc"

    def _connect(self, target: str, channel=None) -> None:
        """Check ``target`` and open the channel (or use ``channel``) and the Predict stub."""
        import_tensorflow()  # tensorflow_serving.apis imports it; this keeps its start-up chatter quiet
        # lazy: gRPC and TF Serving's API protos come with the tagger extra
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if "://" in target:
            raise ValueError(f"gRPC target {target!r}: expected host:port without a scheme")
        self.target = target
        self._grpc = grpc
        self._channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES)]
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"GrpcPredictor({self.target!r}, {self.name!r})"

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def request(self, images: list[bytes]):
        """The ``PredictRequest`` for encoded images (``images``: one ``DT_STRING [n]`` tensor)."""
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.model_spec.signature_name = SIGNATURE_NAME
        if self._pinned is not None:
            request.model_spec.version.value = self._pinned
        elif self.version_label is not None:
            request.model_spec.version_label = self.version_label
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))]
        )
        request.inputs[INPUT_KEY].CopyFrom(
            tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=images)
        )
        return request

    def _scores(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """``float32 (n, tags)`` scores for encoded images, in :attr:`vocabulary` order, and
        the embeddings when the model returns them (None otherwise).

        Raises:
            ServingUnavailable: UNAVAILABLE or DEADLINE_EXCEEDED after the retries.
            ServingError: any other gRPC error (its code and details), or an answer that is not
                scores for these images.
        """
        grpc = self._grpc
        images = _check_images(images)
        if not images:
            return _empty(self.vocabulary), None
        request = self.request(images)
        passing = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, grpc.RpcError) and exc.code() in passing

        where = f"TF Serving at {self.target} (model {self.name})"
        try:
            response = _retrying(
                lambda: self._stub.Predict(request, timeout=self.timeout),
                retryable=retryable,
                retries=self.retries,
                backoff=self.backoff,
                what=f"Predict on {self.target}",
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in passing:
                raise ServingUnavailable(
                    f"{where} could not be reached after {self.retries + 1} attempts ({code.name}: "
                    f"{exc.details()}); check that the server runs, that IMGTAG_SERVING_URL points at its "
                    f"gRPC port (8500), and IMGTAG_SERVING_TIMEOUT ({self.timeout:g}s)"
                ) from exc
            raise ServingError(f"{where}: {code.name}: {exc.details()}") from exc
        if OUTPUT_KEY not in response.outputs:
            raise ServingError(f"{where}: outputs {sorted(response.outputs)}, expected {OUTPUT_KEY!r}")
        if response.model_spec.HasField("version"):
            self.version = int(response.model_spec.version.value)
        scores = _check_shape(
            tensor_values(response.outputs[OUTPUT_KEY]), len(images), self.vocabulary, where
        )
        embeddings = None
        if EMBEDDING_KEY in response.outputs:
            embeddings = tensor_values(response.outputs[EMBEDDING_KEY], "embedding")
            if embeddings.ndim != 2 or len(embeddings) != len(images):
                raise ServingError(
                    f"{where}: expected embeddings for {len(images)} images, got shape {embeddings.shape}"
                )
        return scores, embeddings


#: what each output's TensorProto holds: its dtype's name, how ``tensor_content`` packs it, the
#: repeated field that holds it otherwise (int8 widened to int32), and that field's NumPy type
_TENSOR_KINDS = {
    "scores": ("DT_FLOAT", "<f4", "float_val", np.float32),
    "embedding": ("DT_INT8", np.int8, "int_val", np.int32),
}


def tensor_values(tensor, output: str = "scores") -> np.ndarray:
    """A TensorProto of the model's ``output`` (``scores``: DT_FLOAT, ``embedding``: DT_INT8)
    as an array of its shape, from ``tensor_content`` or the repeated value field.

    Args:
        tensor: a ``tensorflow.core.framework.tensor_pb2.TensorProto``.
        output: which of the model's outputs it is.

    Raises:
        ServingError: not of that output's dtype, or its values do not fill its shape.
    """
    from tensorflow.core.framework import types_pb2

    dtype_name, packed, field, widened = _TENSOR_KINDS[output]
    if tensor.dtype != types_pb2.DataType.Value(dtype_name):
        raise ServingError(
            f"{output} tensor has dtype {types_pb2.DataType.Name(tensor.dtype)}, expected {dtype_name}"
        )
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    count = int(np.prod(shape)) if shape else 1
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=packed)
    else:
        values = np.asarray(getattr(tensor, field), widened)
        if values.size == 1 and count > 1:  # TF's proto compression: one value repeated
            values = np.full(count, values[0], widened)
    if values.size != count:
        raise ServingError(f"{output} tensor of shape {shape} holds {values.size} values")
    return values.astype(np.dtype(packed)).reshape(shape)


# ---- model status -----------------------------------------------------------------------------


def wait_until_available(
    base_url: str,
    name: str,
    version: int,
    *,
    timeout: float = 600.0,
    poll: float = 2.0,
    session: requests.Session | None = None,
) -> None:
    """Return once TF Serving reports ``version`` of ``name`` AVAILABLE (REST model status API).

    ``GET {base_url}/v1/models/{name}/versions/{version}`` answers 404 until the server has
    reread ``models.config`` (every ``--model_config_file_poll_wait_seconds``), then the
    version's state: LOADING, AVAILABLE, or END with the load error.

    Raises:
        RepositoryError: the load failed (the server's error), or the version was not
            AVAILABLE within ``timeout`` seconds (its last state, and what to check).
    """

    url = f"{base_url.rstrip('/')}/v1/models/{name}/versions/{int(version)}"
    http = session or requests.Session()
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    try:
        while True:
            try:
                response = http.get(url, timeout=min(10.0, max(timeout, 0.1)))
                if response.status_code == 200:
                    states = response.json().get("model_version_status", [])
                    mine = next((st for st in states if str(st.get("version")) == str(version)), {})
                    state = mine.get("state", "UNKNOWN")
                    status = mine.get("status", {})
                    if state == "AVAILABLE":
                        return
                    if state == "END" and status.get("error_code", "OK") != "OK":
                        raise RepositoryError(
                            f"TF Serving at {base_url} failed to load {name} version {version}: "
                            f"{status.get('error_code')}: {status.get('error_message')}; the champion "
                            "label stays where it was"
                        )
                    last = f"state {state}"
                else:
                    last = f"HTTP {response.status_code} {_error_message(response)!r}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except ValueError as exc:
                last = f"not JSON: {exc}"
            if time.monotonic() + poll > deadline:
                raise RepositoryError(
                    f"TF Serving at {base_url} did not load {name} version {version} within {timeout:g}s "
                    f"(last: {last}); the version is served unlabelled and the champion label stays where "
                    "it was. Check the server's log and that it mounts the model repository, then "
                    "promote again"
                )
            time.sleep(poll)
    finally:
        if session is None:
            http.close()


# ---- settings and construction ---------------------------------------------------------------


def load_waiter(serving: ServingSettings, name: str) -> Callable[[int], None] | None:
    """``wait(version)`` for :meth:`serving.repository.ModelRepository.promote`: returns once
    the server at ``serving.status_url`` has loaded the version; None when no server is configured."""
    if not serving.status_url:
        return None
    return lambda version: wait_until_available(
        serving.status_url, name, version, timeout=serving.load_timeout
    )


def served_version_path(settings, label: str | None = CHAMPION, version: int | None = None) -> Path:
    """The local directory of the version a label (or number) points at in the model repository.

    Args:
        settings: :class:`core.settings.Settings` (``model_base``, ``model_name``).
        label: a version label in ``models.config`` (``champion``, ``previous``).
        version: a version number instead of a label.

    Returns:
        ``<model_base>/<model_name>/<version>``.

    Raises:
        ServingError: no such label in ``models.config``, or the version's directory is missing.
    """
    repo = ModelRepository(settings.model_base, settings.model_name)
    if version is None:
        labels = dict(repo.served().labels)
        if label not in labels:
            raise ServingError(
                f"{repo.config_path}: no version labelled {label!r} for {repo.name} "
                f"(labels: {labels or 'none'}); promote a model first (imgtag promote)"
            )
        version = labels[label]
    path = repo.path(version)
    if not (path / "saved_model.pb").is_file():
        raise ServingError(f"{path}: version {version} of {repo.name} is not in the model repository")
    return path


def vocabulary_from_repository(
    settings, label: str | None = CHAMPION, version: int | None = None
) -> Vocabulary:
    """The tag vocabulary of a served version, read from the model repository's ``assets/``.

    TF Serving does not serve a model's assets, so remote predictors read the vocabulary from
    the shared volume the server loads the model from.

    Args:
        settings: :class:`core.settings.Settings` (``model_base``, ``model_name``).
        label: the version label (default ``champion``).
        version: a version number instead of a label.

    Returns:
        The vocabulary in ``assets/tags.csv`` of that version.

    Raises:
        ServingError: no such label or version in the repository.
        FileNotFoundError: the version has no ``assets/tags.csv``.
    """
    return Vocabulary.read(served_version_path(settings, label, version) / "assets")


def predictor_from_settings(settings, serving: ServingSettings | None = None) -> Predictor:
    """The predictor the settings ask for, serving the labelled version of ``settings.model_name``.

    Args:
        settings: :class:`core.settings.Settings` (``model_base``, ``model_name``, ``serving``).
        serving: which predictor and where, instead of ``settings.serving`` (a pinned version).

    Returns:
        An :class:`InProcessPredictor` of the labelled version, or a :class:`RestPredictor` or
        :class:`GrpcPredictor` asking TF Serving for it, with its vocabulary from the repository.

    Raises:
        ServingError: the repository has no such label or version.
    """
    serving = settings.serving if serving is None else serving
    if serving.predictor == "inprocess":
        return InProcessPredictor(served_version_path(settings, serving.label, serving.version))
    vocabulary = vocabulary_from_repository(settings, serving.label, serving.version)
    common = {
        "version_label": serving.label,
        "version": serving.version,
        "vocabulary": vocabulary,
        "timeout": serving.timeout,
    }
    if serving.predictor == "rest":
        return RestPredictor(serving.url, settings.model_name, **common)
    return GrpcPredictor(serving.url, settings.model_name, **common)
