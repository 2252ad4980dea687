"""The worker with its scores from TF Serving (``IMGTAG_PREDICTOR=rest|grpc``), on the real broker.

TF Serving is the stand-in of ``tests/serving/standin.py`` (its REST and gRPC protocols over a
real SavedModel), serving a tiny colour model promoted into the worker's model repository.
"""

from __future__ import annotations

import pytest

from serving.repository import ModelRepository
from tests.pipelines.tagging.test_worker import assert_each_asset_tagged_once, write_images
from tests.serving.tiny_model import NAME, TAGS, tiny_saved_model


@pytest.fixture
def champion(env, tmp_path):
    """Version 1 promoted (labelled champion) in the env's model repository, and a stand-in serving it."""
    from tests.serving.standin import Served

    repo = ModelRepository(env.home / "models", NAME)
    repo.promote(tiny_saved_model(tmp_path / "export", 1.0), {"run_id": "r1"})
    return Served(NAME, {1: repo.path(1)}, {"champion": 1})


@pytest.fixture
def server(request, champion):
    from tests.serving.standin import GrpcStandin, RestStandin

    kind = getattr(request, "param", "rest")
    with (RestStandin if kind == "rest" else GrpcStandin)(champion) as running:
        url = running.url if kind == "rest" else running.target
        yield kind, url, champion


@pytest.mark.parametrize("server", ["rest", "grpc"], indirect=True)
def test_drain_tags_with_the_model_server(env, tmp_path, server):
    kind, url, served = server
    count = 6
    env.run("import", "--queue", str(write_images(tmp_path / "photos", count, size=(96, 72))))
    summary = env.json("drain", IMGTAG_PREDICTOR=kind, IMGTAG_SERVING_URL=url)
    assert summary["tagged"] == count and summary["serving_waits"] == 0
    assert served.calls >= 1
    assert_each_asset_tagged_once(env, count)
    # Tags come from the served model's vocabulary and name the version that answered.
    rows = env.sql(
        "select distinct t.name, m.name, m.version from catalog_assettag a "
        "join catalog_tag t on t.id = a.tag_id join catalog_modelversion m on m.id = a.model_version_id"
    )
    assert {name for name, _, _ in rows} <= set(TAGS)
    assert {(model, version) for _, model, version in rows} == {(NAME, "1")}


def test_an_outage_holds_the_batch_until_the_server_answers(env, tmp_path, server):
    kind, url, served = server
    count = 4
    env.run("import", "--queue", str(write_images(tmp_path / "photos", count, size=(96, 72), seed=5)))
    served.fail_first = 7  # more than one request's retries: the first batch meets an outage
    summary = env.json("drain", IMGTAG_PREDICTOR=kind, IMGTAG_SERVING_URL=url, IMGTAG_SERVING_TIMEOUT="2")
    assert summary["serving_waits"] >= 1
    assert summary["tagged"] == count and summary["dead_lettered"] == 0
    assert_each_asset_tagged_once(env, count)


def test_before_any_promotion_the_starter_model_tags_in_process(env, tmp_path):
    """Nothing is served yet (no `imgtag starter install`, no promotion): the starter model tags
    in process, whatever IMGTAG_PREDICTOR says."""
    from serving import starter

    env.run("import", "--queue", str(write_images(tmp_path / "photos", 2, size=(96, 72), seed=6)))
    summary = env.json("drain", IMGTAG_PREDICTOR="grpc", IMGTAG_SERVING_URL="127.0.0.1:9")
    assert summary["tagged"] == 2
    assert env.sql("select distinct name, version from catalog_modelversion") == [
        (starter.MODEL_NAME, starter.load_head().version)
    ]
