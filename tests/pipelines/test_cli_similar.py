"""``imgtag similar`` and ``imgtag embeddings backfill`` as a user runs them: the starter model,
a real SQLite catalog, subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import skimage.data

# each command is a new process that loads TensorFlow and the starter model (10-25 s a test)
pytestmark = pytest.mark.slow

IMGTAG = [sys.executable, "-m", "pipelines.cli"]


def run(args, home: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "IMGTAG_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [*IMGTAG, *map(str, args)], capture_output=True, text=True, env=environment, timeout=600
    )


def test_a_resized_copy_finds_its_original_first(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cat = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(photos / "chelsea.jpg"), cat)
    cv2.imwrite(str(photos / "coffee.jpg"), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "rocket.jpg"), cv2.cvtColor(skimage.data.rocket(), cv2.COLOR_RGB2BGR))
    query = tmp_path / "chelsea-small.png"
    cv2.imwrite(
        str(query),
        cv2.resize(cat, (cat.shape[1] * 2 // 5, cat.shape[0] * 2 // 5), interpolation=cv2.INTER_AREA),
    )
    home = tmp_path / "home"
    assert run(["import", photos], home).returncode == 0

    done = run(["similar", query, "--json"], home)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [f["filename"] for f in found][0] == "chelsea.jpg" and len(found) == 3
    # the copy within the near-duplicate distance, the others not
    assert found[0]["score"] > 0.7 > found[1]["score"]

    backfill = run(["embeddings", "backfill", "--json"], home)
    assert backfill.returncode == 0, backfill.stderr
    assert json.loads(backfill.stdout) == {"embedded": 0, "failed": []}  # import embedded them all


def test_without_a_model_that_embeds_similar_says_so(tmp_path):
    picture = tmp_path / "chelsea.png"
    cv2.imwrite(str(picture), skimage.data.chelsea())
    done = run(["similar", picture], tmp_path / "home", IMGTAG_STARTER="off")
    assert done.returncode == 2 and "makes no embeddings" in done.stderr
