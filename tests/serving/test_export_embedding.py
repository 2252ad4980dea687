"""An exported model's embedding reaches every tagging path: TensorFlow, LiteRT, the tag results."""

import cv2
import numpy as np
import pytest

from core import embedding
from core.runtimes import litert_interpreter
from core.tagger import Tagger
from core.vocabulary import Vocabulary

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small two-headed model with the backbone's layer names, exported as the real one is."""
    import keras

    from core import model as tagger_model
    from core.tagmap import TagMap
    from core.vocabulary import merge
    from serving.export import export_model

    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(1280, 3, activation="relu", name="conv")(
        keras.layers.Rescaling(1 / 255)(inputs)
    )
    pooled = keras.layers.GlobalAveragePooling2D(name="features")(conv)
    tiny = keras.Model(
        inputs,
        {
            tagger_model.LEARNED: keras.layers.Dense(2, activation="sigmoid", name="learned")(pooled),
            tagger_model.IMAGENET: keras.layers.Dense(1000, name="fc")(pooled),
        },
    )
    tags = ["person", "cat"]
    trained = tagger_model.TrainedModel(tiny, tags, SIZE, {})
    merged = merge(tags, {t: 0.5 for t in tags}, TagMap.load())
    out = tmp_path_factory.mktemp("export") / "1"
    export_model(trained, merged, out)
    return out


def pictures(n: int) -> list[bytes]:
    rng = np.random.default_rng(5)
    return [
        cv2.imencode(".png", rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8))[1].tobytes() for _ in range(n)
    ]


def test_tf_serving_and_litert_give_the_same_embedding_with_the_tags(exported, tmp_path):
    from core.tf_runtime import import_tensorflow
    from serving.current import CurrentModel, _champion_flatbuffer

    tf = import_tensorflow()
    images = pictures(3)
    served = tf.saved_model.load(str(exported)).signatures["serving_default"](images=tf.constant(images))
    assert set(served) == {"scores", "embedding"} and served["embedding"].dtype == tf.int8
    model = CurrentModel("tiny", "1", exported, SIZE, served=True)
    predict = litert_interpreter(_champion_flatbuffer(tmp_path, model, 4))
    tagger = Tagger(predict, Vocabulary.read(exported / "assets"), "tiny", "1", image_size=SIZE, batch_size=4)
    results = list(tagger.tag_images((k, data, f"{k}.png") for k, data in enumerate(images)))
    got = np.stack([r.embedding for r in results])
    assert got.dtype == np.int8 and got.shape == (3, embedding.DIMENSIONS)
    # OpenCV's resize and TensorFlow's differ a little; the directions stay the same
    assert np.diag(1 - embedding.cosine_distance(got, served["embedding"].numpy())).min() > 0.99
    np.testing.assert_allclose(
        tagger.predict_pixels(
            np.stack(
                [cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), 1), cv2.COLOR_BGR2RGB) for d in images]
            )
        ),
        served["scores"].numpy(),
        atol=1e-4,
    )


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_tf_serving_answers_carry_the_embedding_to_the_tags(kind, exported):
    """Through TF Serving (its stand-in), REST and gRPC, the tagger gets the same embeddings as
    the SavedModel computes, with the same scores."""
    from core.tf_runtime import import_tensorflow
    from serving.predictors import GrpcPredictor, RestPredictor
    from tests.serving.standin import GrpcStandin, RestStandin, Served

    tf = import_tensorflow()
    images = pictures(3)
    local = tf.saved_model.load(str(exported)).signatures["serving_default"](images=tf.constant(images))
    vocabulary = Vocabulary.read(exported / "assets")
    served = Served("tiny", {1: exported}, {"champion": 1})
    server = RestStandin(served) if kind == "rest" else GrpcStandin(served)
    with server:
        predictor = (
            RestPredictor(server.url, "tiny", vocabulary=vocabulary, version=1)
            if kind == "rest"
            else GrpcPredictor(server.target, "tiny", vocabulary=vocabulary, version=1)
        )
        with predictor:
            scores, embeddings = predictor.scores_and_embeddings(images)
            tagger = Tagger(
                None,
                vocabulary,
                "tiny",
                "1",
                image_size=SIZE,
                predict_encoded=predictor.scores_and_embeddings,
            )
            results = list(tagger.tag_images((k, data, f"{k}.png") for k, data in enumerate(images)))
    np.testing.assert_array_equal(embeddings, local["embedding"].numpy())
    np.testing.assert_allclose(scores, local["scores"].numpy(), atol=1e-5)
    assert embeddings.dtype == np.int8
    np.testing.assert_array_equal(np.stack([r.embedding for r in results]), embeddings)
