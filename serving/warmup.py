"""TF Serving warm-up requests, stored inside the SavedModel.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` when it loads a version, before
the version is marked AVAILABLE, so the first real request does not pay for graph
initialisation. The file is a TFRecord of ``PredictionLog`` protos; TF Serving rejects a file
with more than 1000 records. Each record here is one ``PredictRequest`` with a batch of encoded
images (``DT_STRING``) for the signature's input, one record per batch size, so each batch
shape the server will see is traced once.

TensorFlow is imported inside the functions (``tensorflow_serving.apis`` pulls it in), so
importing this module stays cheap.
"""

from __future__ import annotations

from itertools import cycle, islice
from pathlib import Path

from core import atomic
from core.tf_runtime import import_tensorflow

WARMUP_FILENAME = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit per warm-up file


def warmup_path(saved_model_dir: str | Path) -> Path:
    """Where TF Serving looks for warm-up requests: ``assets.extra/tf_serving_warmup_requests``."""
    return Path(saved_model_dir) / "assets.extra" / WARMUP_FILENAME


def write_warmup(
    saved_model_dir: str | Path,
    model_name: str,
    images: list[bytes],
    *,
    input_key: str = "images",
    signature_name: str = "serving_default",
    batch_sizes: tuple[int, ...] = (1,),
) -> Path:
    """Write the warm-up file of a SavedModel (replacing any earlier one).

    Args:
        saved_model_dir: the SavedModel directory (``assets.extra/`` is created if missing).
        model_name: the model's name as TF Serving serves it (``ModelSpec.name``).
        images: encoded images (JPEG, PNG ...); a batch larger than the list repeats them.
        input_key: the signature's input name.
        signature_name: the signature the requests call.
        batch_sizes: one request per batch size.

    Returns:
        The path of the written file.

    Raises:
        ValueError: no images, a batch size below 1, or more than 1000 batch sizes.
    """
    if not images:
        raise ValueError("warm-up needs at least one image")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be >= 1, got {batch_sizes!r}")
    if len(batch_sizes) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(batch_sizes)} batch sizes; TF Serving reads {MAX_WARMUP_RECORDS} at most")
    if not all(isinstance(image, bytes) for image in images):
        raise ValueError("warm-up images must be bytes (encoded image files)")

    tf = import_tensorflow()
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = warmup_path(saved_model_dir)
    with atomic.replacing(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for batch_size in batch_sizes:
            batch = list(islice(cycle(images), int(batch_size)))
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            request.inputs[input_key].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(record.SerializeToString())
    return path


def read_warmup(saved_model_dir: str | Path) -> list:
    """The warm-up requests of a SavedModel, in file order.

    Args:
        saved_model_dir: the SavedModel directory.

    Returns:
        ``tensorflow_serving.apis.predict_pb2.PredictRequest`` messages (empty when there is no
        warm-up file).
    """
    path = warmup_path(saved_model_dir)
    if not path.is_file():
        return []

    tf = import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for raw in tf.data.TFRecordDataset(str(path)):
        record = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        requests.append(record.predict_log.request)
    return requests
