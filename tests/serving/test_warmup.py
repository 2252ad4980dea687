"""TF Serving warm-up requests: a TFRecord of PredictionLogs inside the SavedModel."""

from pathlib import Path

import pytest

from core.tf_runtime import import_tensorflow
from serving.warmup import read_warmup, warmup_path, write_warmup

IMAGES = [b"\xff\xd8\xff\xe0 first jpeg", b"\x89PNG\r\n\x1a\n second png"]


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> Path:
    """A tiny SavedModel: ``serving_default`` takes ``images`` (tf.string [None]), returns float scores."""
    tf = import_tensorflow()

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            return {"scores": tf.cast(tf.strings.length(images), tf.float32)[:, None]}

    module = Tiny()
    out = tmp_path_factory.mktemp("tiny") / "saved_model"
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


@pytest.fixture()
def model_dir(saved_model, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(saved_model, tmp_path / "1"))


def test_write_and_read_back(model_dir):
    tf = import_tensorflow()

    path = write_warmup(model_dir, "imgtag-tagger", IMAGES)
    assert path == model_dir / "assets.extra" / "tf_serving_warmup_requests" == warmup_path(model_dir)
    (request,) = read_warmup(model_dir)
    assert request.model_spec.name == "imgtag-tagger"
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["images"]
    tensor = request.inputs["images"]
    assert tensor.dtype == tf.string.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [1]
    assert list(tensor.string_val) == IMAGES[:1]
    assert sum(1 for _ in tf.data.TFRecordDataset(str(path))) == 1
    assert list(model_dir.parent.glob("**/*.tmp")) == []


def test_one_record_per_batch_size(model_dir):
    tf = import_tensorflow()

    path = write_warmup(
        model_dir, "tagger", IMAGES, input_key="pixels", signature_name="predict", batch_sizes=(1, 2, 5)
    )
    assert sum(1 for _ in tf.data.TFRecordDataset(str(path))) == 3
    requests = read_warmup(model_dir)
    assert [r.model_spec.signature_name for r in requests] == ["predict"] * 3
    batches = [list(r.inputs["pixels"].string_val) for r in requests]
    assert batches == [IMAGES[:1], IMAGES, [*IMAGES, *IMAGES, IMAGES[0]]]


def test_requests_run_against_the_model(model_dir):
    """What TF Serving does at load time: feed each request's tensors to the named signature."""
    tf = import_tensorflow()

    write_warmup(model_dir, "imgtag-tagger", IMAGES, batch_sizes=(1, 4))
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    for request in read_warmup(model_dir):
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        scores = serve(**inputs)["scores"].numpy()
        assert scores.shape == (request.inputs["images"].tensor_shape.dim[0].size, 1)


def test_rewrite_replaces(model_dir):
    write_warmup(model_dir, "m", IMAGES, batch_sizes=(1, 2))
    write_warmup(model_dir, "m", IMAGES[1:])
    assert [list(r.inputs["images"].string_val) for r in read_warmup(model_dir)] == [IMAGES[1:]]


def test_no_warmup_file(tmp_path):
    assert read_warmup(tmp_path) == []


@pytest.mark.parametrize(
    "images, batch_sizes",
    [([], (1,)), (IMAGES, ()), (IMAGES, (0,)), (IMAGES, tuple(range(1, 1002))), (["not bytes"], (1,))],
)
def test_invalid_arguments(tmp_path, images, batch_sizes):
    with pytest.raises(ValueError):
        write_warmup(tmp_path, "m", images, batch_sizes=batch_sizes)
    assert not warmup_path(tmp_path).exists()
