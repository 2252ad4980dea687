"""The TF Serving model repository: numbered versions appear atomically, labels follow promotions.

Real (tiny) SavedModels go in; ``models.config`` is parsed back with protobuf ``text_format``
as TF Serving would read it.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.repository import (
    PROMOTION_ASSET,
    STAGING_PREFIX,
    ModelRepository,
    Promotion,
    RepositoryError,
    Served,
    models_config_text,
    read_models_config,
)

ROOT = Path(__file__).resolve().parents[2]
NAME = "imgtag-tagger"


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> Path:
    """A tiny SavedModel: ``serving_default`` takes ``images`` (tf.string [None]), returns float scores."""
    from core.tf_runtime import import_tensorflow

    tf = import_tensorflow()

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(0.5)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            lengths = tf.cast(tf.strings.length(images), tf.float32)
            return {"scores": tf.stack([lengths * self.scale, -lengths], axis=1)}

    module = Tiny()
    out = tmp_path_factory.mktemp("tiny") / "saved_model"
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


@pytest.fixture()
def repo(tmp_path) -> ModelRepository:
    return ModelRepository(tmp_path / "models", NAME, serving_base_path="/models")


def entry(repo: ModelRepository, name: str = NAME) -> model_server_config_pb2.ModelConfig:
    config = text_format.Parse(repo.config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    (found,) = [c for c in config.model_config_list.config if c.name == name]
    return found


def leftovers(repo: ModelRepository) -> list[str]:
    return [p.name for p in repo.model_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_module_imports_without_tensorflow():
    code = "import sys, serving.repository, serving.warmup; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_empty_repository(repo):
    assert repo.versions() == []
    assert repo.current() is None
    assert repo.history() == []
    assert repo.read_config() is None
    with pytest.raises(RepositoryError, match="nothing to roll back"):
        repo.rollback()


def test_first_promotion(repo, saved_model):
    metadata = {"run_id": "r1", "version": "mlflow-7"}  # "version" must not clash with ours
    promotion = repo.promote(saved_model, metadata)
    assert promotion == Promotion(NAME, 1, repo.model_dir / "1", None, metadata)
    assert repo.versions() == [1]
    assert (repo.path(1) / "saved_model.pb").is_file()
    assert (repo.path(1) / "variables").is_dir()
    record = json.loads((repo.path(1) / "assets.extra" / PROMOTION_ASSET).read_text())
    assert record["version"] == 1 and record["name"] == NAME
    assert record["metadata"] == metadata
    assert record["promoted_at"].endswith("+00:00")

    config = entry(repo)
    assert config.base_path == f"/models/{NAME}"
    assert config.model_platform == "tensorflow"
    assert list(config.model_version_policy.specific.versions) == [1]
    assert dict(config.version_labels) == {"champion": 1}
    assert repo.current() == promotion
    assert json.loads(json.dumps(promotion.to_dict()))["path"] == str(repo.model_dir / "1")


def test_promote_rollback_walk(repo, saved_model):
    repo.promote(saved_model, {"run_id": "r1"})
    second = repo.promote(saved_model, {"run_id": "r2"})
    assert (second.version, second.previous) == (2, 1)
    config = entry(repo)
    assert dict(config.version_labels) == {"champion": 2, "previous": 1}
    assert list(config.model_version_policy.specific.versions) == [2, 1]
    assert repo.current().metadata == {"run_id": "r2"}

    restored = repo.rollback()
    assert (restored.version, restored.previous, restored.metadata) == (1, None, {"run_id": "r1"})
    config = entry(repo)
    assert dict(config.version_labels) == {"champion": 1}
    assert list(config.model_version_policy.specific.versions) == [1]
    assert (repo.path(2) / "saved_model.pb").is_file()  # kept for forensics, no longer served
    assert repo.versions() == [1, 2]
    history = repo.history()
    assert [h["action"] for h in history] == ["promote", "promote", "rollback"]
    assert history[2]["version"] == 1 and history[2]["rolled_back"] == 2

    with pytest.raises(RepositoryError, match="nothing to roll back"):
        repo.rollback()
    assert repo.current().version == 1

    third = repo.promote(saved_model, {"run_id": "r3"})
    assert (third.version, third.previous) == (3, 1)  # never reuses 2
    assert dict(entry(repo).version_labels) == {"champion": 3, "previous": 1}
    assert repo.rollback().version == 1


def test_rollback_walks_back_through_promotions(repo, saved_model):
    for run in ("r1", "r2", "r3"):
        repo.promote(saved_model, {"run_id": run})
    back = repo.rollback()
    assert (back.version, back.previous, back.metadata) == (2, 1, {"run_id": "r2"})
    assert list(entry(repo).model_version_policy.specific.versions) == [2, 1]
    back = repo.rollback()
    assert (back.version, back.previous) == (1, None)
    assert dict(entry(repo).version_labels) == {"champion": 1}
    with pytest.raises(RepositoryError):
        repo.rollback()
    assert len(repo.history()) == 5


def test_a_version_number_given_is_the_directory_and_a_version_on_disk_is_served_again(
    repo, saved_model, tmp_path
):
    """One number names a model everywhere: the MLflow version becomes the directory (a rejected
    version leaves a gap), and promoting a version served before serves that directory again."""
    starter = repo.promote(saved_model, {"mlflow_version": "1", "starter": "starter-x"}, version=1)
    assert (starter.version, starter.previous) == (1, None)
    second = repo.promote(saved_model, {"mlflow_version": "3"}, version=3)  # version 2 was rejected
    assert (second.version, second.previous) == (3, 1) and repo.versions() == [1, 3]
    record = (repo.path(1) / "assets.extra" / PROMOTION_ASSET).read_text()

    elsewhere = tmp_path / "not-a-copy"  # nothing is copied from the source for a version on disk
    shutil.copytree(saved_model, elsewhere)
    (elsewhere / "marker").write_text("x")
    back = repo.promote(elsewhere, {"mlflow_version": "1", "starter": "starter-x"}, version=1)
    assert (back.version, back.previous) == (1, 3) and not (repo.path(1) / "marker").exists()
    assert (repo.path(1) / "assets.extra" / PROMOTION_ASSET).read_text() == record
    assert dict(entry(repo).version_labels) == {"champion": 1, "previous": 3}
    assert [(h["action"], h["version"]) for h in repo.history()] == [
        ("promote", 1),
        ("promote", 3),
        ("promote", 1),
    ]

    assert repo.promote(saved_model, {"mlflow_version": "1"}, version=1) == repo.current()  # already champion
    assert len(repo.history()) == 3
    assert repo.rollback().version == 3  # undoes the last promotion

    with pytest.raises(RepositoryError, match="already holds MLflow version 1, not MLflow version 4"):
        repo.promote(saved_model, {"mlflow_version": "4"}, version=1)
    assert repo.current().version == 3
    with pytest.raises(RepositoryError, match="positive"):
        repo.promote(saved_model, {}, version=0)


def test_version_numbers_survive_deleted_directories(repo, saved_model):
    repo.promote(saved_model, {})
    repo.promote(saved_model, {})
    repo.rollback()
    shutil.rmtree(repo.path(2))
    assert repo.promote(saved_model, {}).version == 3


def test_not_a_saved_model(repo, tmp_path):
    empty = tmp_path / "empty"
    (empty / "variables").mkdir(parents=True)
    with pytest.raises(RepositoryError, match="saved_model.pb"):
        repo.promote(empty, {})
    with pytest.raises(RepositoryError, match="no such directory"):
        repo.promote(tmp_path / "missing", {})
    assert repo.versions() == [] and not repo.config_path.exists()


def test_metadata_must_be_json(repo, saved_model):
    with pytest.raises(TypeError):
        repo.promote(saved_model, {"when": object()})
    assert repo.versions() == [] and not repo.config_path.exists()


def test_copy_failing_midway_changes_nothing(repo, saved_model, monkeypatch):
    repo.promote(saved_model, {"run_id": "r1"})
    config_before = repo.config_path.read_bytes()
    history_before = repo.history()
    real_copy2 = shutil.copy2
    copied = []

    def flaky_copy2(src, dst, **kwargs):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(src)
        return real_copy2(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copy2", flaky_copy2)
    with pytest.raises(OSError, match="No space left"):
        repo.promote(saved_model, {"run_id": "r2"})
    monkeypatch.undo()

    assert copied, "the copy should fail midway, after at least one file"
    assert repo.versions() == [1]
    assert sorted(p.name for p in repo.model_dir.iterdir() if p.name.isdigit()) == ["1"]
    assert leftovers(repo) == []
    assert repo.config_path.read_bytes() == config_before
    assert repo.history() == history_before
    assert repo.promote(saved_model, {"run_id": "r2"}).version == 2


def test_poller_never_sees_half_a_version(repo, saved_model):
    repo.model_dir.mkdir(parents=True)
    seen_incomplete, seen = [], set()
    done = threading.Event()

    def poll():  # what TF Serving's file-system source does: list numeric dirs, load them
        while not done.is_set():
            for name in os.listdir(repo.model_dir):
                if not name.isdigit():
                    continue
                version = repo.model_dir / name
                seen.add(int(name))
                complete = (
                    (version / "saved_model.pb").is_file()
                    and (version / "variables" / "variables.index").is_file()
                    and (version / "assets.extra" / PROMOTION_ASSET).is_file()
                )
                if not complete:
                    seen_incomplete.append(name)
            if not set(repo.versions()) >= seen:  # versions() never drops a version once listed
                seen_incomplete.append(f"versions() {repo.versions()} lost one of {sorted(seen)}")

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for i in range(10):
            repo.promote(saved_model, {"i": i})
    finally:
        done.set()
        poller.join()
    assert seen_incomplete == []
    assert seen, "the poller never ran"
    assert repo.versions() == list(range(1, 11))
    assert dict(entry(repo).version_labels) == {"champion": 10, "previous": 9}


def test_concurrent_threads_get_distinct_versions(repo, saved_model):
    results, errors = [], []

    def promote(i):
        try:
            results.append(repo.promote(saved_model, {"thread": i}).version)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 7))
    assert repo.versions() == list(range(1, 7))
    assert leftovers(repo) == []
    assert len(repo.history()) == 6
    config = entry(repo)
    assert config.version_labels["champion"] == 6 and config.version_labels["previous"] == 5


def test_concurrent_processes_get_distinct_versions(repo, saved_model):
    script = (
        "import json, sys\n"
        "from serving.repository import ModelRepository\n"
        "repo = ModelRepository(sys.argv[1], sys.argv[2], serving_base_path='/models')\n"
        "print(json.dumps([repo.promote(sys.argv[3], {'proc': sys.argv[4]}).version for _ in range(3)]))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(repo.base), NAME, str(saved_model), str(i)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        versions += json.loads(out)
    assert sorted(versions) == list(range(1, 13))
    assert repo.versions() == list(range(1, 13))
    assert [h["version"] for h in repo.history()] == sorted(versions)
    assert entry(repo).version_labels["champion"] == 12


def test_other_models_in_config_are_kept(repo, saved_model):
    other = model_server_config_pb2.ModelServerConfig()
    kept = other.model_config_list.config.add()
    kept.name = "faces"
    kept.base_path = "/models/faces"
    kept.model_platform = "tensorflow"
    kept.model_version_policy.latest.num_versions = 2
    kept.version_labels["stable"] = 4
    repo.base.mkdir(parents=True)
    repo.config_path.write_text(models_config_text(other))

    repo.promote(saved_model, {})
    repo.promote(saved_model, {})
    repo.rollback()
    config = read_models_config(repo.config_path)
    assert [c.name for c in config.model_config_list.config] == ["faces", NAME]
    assert config.model_config_list.config[0] == kept
    assert dict(entry(repo).version_labels) == {"champion": 1}


# Edited by hand: comments, another model, the alternative syntax (`<>`, lists, `;`, single
# quotes): text TF Serving accepts, read as protobuf reads it.
HAND_WRITTEN = """
# edited by hand
model_config_list: <
  config [{ name: 'faces' base_path: "/models/faces" version_labels { key: "champion" value: 9 } },
          { name: "imgtag-tagger"; base_path: "/models/imgtag-tagger"; model_platform: "tensorflow"
            # the previous champion stays loaded for a rollback
            model_version_policy { specific { versions: [5, 4] } }
            version_labels { key: "champion" value: 5 } version_labels: { key: "previous", value: 4 } }]
>
"""


def test_a_hand_edited_config_is_read_as_tf_serving_reads_it(repo):
    repo.base.mkdir(parents=True)
    repo.config_path.write_text(HAND_WRITTEN)
    assert dict(entry(repo).version_labels) == {"champion": 5, "previous": 4}  # protobuf's reading
    assert repo.served() == Served((5, 4), {"champion": 5, "previous": 4})
    assert ModelRepository(repo.base, "faces").served() == Served((), {"champion": 9})
    assert ModelRepository(repo.base, "absent").served() == Served()
    assert (repo.current().version, repo.current().previous) == (5, 4)


def test_a_written_config_parses_back_into_the_same_versions_and_labels(repo, saved_model):
    repo.promote(saved_model, {})
    repo.promote(saved_model, {})
    parsed = text_format.Parse(repo.config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    (config,) = parsed.model_config_list.config
    assert (config.name, config.base_path, config.model_platform) == (NAME, f"/models/{NAME}", "tensorflow")
    assert list(config.model_version_policy.specific.versions) == [2, 1]
    assert dict(config.version_labels) == {"champion": 2, "previous": 1}
    assert repo.served() == Served((2, 1), {"champion": 2, "previous": 1})
    # the text TF Serving reads: the same format protobuf writes, nothing else in the file
    assert repo.config_path.read_text() == text_format.MessageToString(parsed)


@pytest.mark.parametrize(
    "text",
    [
        "model_config_list {",
        "model_config_list { config { name: } }",
        'model_config_list { config { name: "imgtag-tagger" version_labels { key: "champion" value: x } } }',
        'model_config_list { config { name: "unterminated } }',
    ],
)
def test_a_damaged_config_is_an_error_when_reading_labels(repo, text):
    repo.base.mkdir(parents=True)
    repo.config_path.write_text(text)
    with pytest.raises(RepositoryError, match="not a valid ModelServerConfig"):
        repo.current()


def test_labels_are_read_without_tensorflow(repo, saved_model):
    """The catalog's image has no TensorFlow, only TF Serving's config protos (and protobuf): it
    reads which version is champion all the same. Without the protos, reading says which extra
    it needs."""
    repo.promote(saved_model, {"run": "a"})
    repo.promote(saved_model, {"run": "b"})
    code = f"""
import sys
REFUSED = sys.argv[1].split(",")
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"No module named {{name!r}} (refused)", name=name)
sys.meta_path.insert(0, Refuse())
from pathlib import Path
from core.errors import UsageError
from serving.repository import ModelRepository
repo = ModelRepository(Path({str(repo.base)!r}), {NAME!r})
try:
    current = repo.current()
    print(current.version, current.previous, current.metadata["run"], "tensorflow" in sys.modules)
except UsageError as exc:
    print("UsageError:", exc)
"""

    def run(refused: str) -> str:
        out = subprocess.run([sys.executable, "-c", code, refused], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run("tensorflow,keras,grpc") == "2 1 b False"
    missing = run("tensorflow,tensorflow_serving")
    assert missing.startswith("UsageError:") and "pip install 'imgtag[tagger]'" in missing


def test_serving_base_path(tmp_path, saved_model):
    s3 = ModelRepository(tmp_path / "a", NAME, serving_base_path="s3://bucket/models/")
    s3.promote(saved_model, {})
    assert entry(s3).base_path == f"s3://bucket/models/{NAME}"

    local = ModelRepository(tmp_path / "b")
    local.promote(saved_model, {})
    assert entry(local).base_path == str((tmp_path / "b" / NAME).absolute())
    assert local.name == "imgtag-tagger"


def test_config_and_log_disagreeing_is_an_error(repo, saved_model):
    repo.promote(saved_model, {})
    repo.promote(saved_model, {})
    text = repo.config_path.read_text().replace("value: 2", "value: 7")
    repo.config_path.write_text(text)
    with pytest.raises(RepositoryError, match="fix models.config"):
        repo.rollback()


def test_torn_log_line_is_skipped(repo, saved_model):
    repo.promote(saved_model, {})
    with open(repo.log_path, "a") as handle:
        handle.write('{"action": "promo')
    assert len(repo.history()) == 1
    assert repo.promote(saved_model, {}).version == 2
    assert [h["version"] for h in repo.history()] == [1, 2]


# ---- with a model server: the label moves only once the server has loaded the version -----------


class _Loader:
    """Plays TF Serving's config polling: loads each version models.config adds, after ``delay``,
    and remembers which version was labelled champion at that moment."""

    def __init__(self, repo, served, delay: float = 0.3, fail: dict | None = None):
        import threading

        self.repo, self.served, self.delay, self.fail = repo, served, delay, fail or {}
        self.champion_when_loaded: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        import time

        while not self.stop.is_set():
            for version in self.repo.served().versions:
                if version in self.served.signatures or version in self.served.load_errors:
                    continue
                time.sleep(self.delay)
                if version in self.fail:
                    self.served.load_errors[version] = self.fail[version]
                    continue
                self.champion_when_loaded[version] = self.repo.served().labels.get("champion")
                self.served.load(version, self.repo.path(version))
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def serving(tmp_path):
    """A repository with version 1 as champion, and a REST stand-in that has loaded it."""
    from tests.serving.standin import RestStandin, Served
    from tests.serving.tiny_model import NAME, tiny_saved_model

    repo = ModelRepository(tmp_path / "models", NAME)
    repo.promote(tiny_saved_model(tmp_path / "v1", 1.0), {"run_id": "r1"})
    served = Served(NAME, {1: repo.path(1)}, {"champion": 1})
    with RestStandin(served) as server:
        yield repo, served, server, lambda n: tiny_saved_model(tmp_path / f"v{n}", 1.0 / n)


def waiter(server, timeout=20.0):
    from serving.predictors import wait_until_available

    return lambda version: wait_until_available(
        server.url, "imgtag-tagger", version, timeout=timeout, poll=0.05
    )


def test_promote_moves_the_label_only_after_the_server_loaded_the_version(serving):
    repo, served, server, export = serving
    with _Loader(repo, served) as loader:
        promotion = repo.promote(export(2), {"run_id": "r2"}, wait=waiter(server))
    assert promotion.version == 2
    assert loader.champion_when_loaded == {2: 1}  # still version 1 while the server loaded 2
    assert repo.served() == Served((2, 1), {"champion": 2, "previous": 1})


def test_promote_gives_up_when_the_server_never_loads_it_and_keeps_the_champion(serving):
    repo, served, server, export = serving
    with pytest.raises(RepositoryError, match="did not load imgtag-tagger version 2 within 0.5s"):
        repo.promote(export(2), {"run_id": "r2"}, wait=waiter(server, timeout=0.5))
    now = repo.served()
    assert now.labels == {"champion": 1} and set(now.versions) == {1, 2}
    assert [entry["version"] for entry in repo.history()] == [1]
    # The server catches up later: promoting again takes the next number and succeeds.
    with _Loader(repo, served):
        assert repo.promote(export(3), {"run_id": "r3"}, wait=waiter(server)).version == 3
    assert repo.served().labels == {"champion": 3, "previous": 1}


def test_promote_reports_the_servers_load_error(serving):
    repo, served, server, export = serving
    with (
        _Loader(repo, served, fail={2: "Op type not registered 'Frobnicate'"}),
        pytest.raises(RepositoryError, match="failed to load imgtag-tagger version 2: .*Frobnicate"),
    ):
        repo.promote(export(2), {"run_id": "r2"}, wait=waiter(server))
    assert repo.served().labels == {"champion": 1}


def test_rollback_waits_for_the_restored_champions_previous(serving):
    repo, served, server, export = serving
    with _Loader(repo, served) as loader:
        repo.promote(export(2), {"run_id": "r2"}, wait=waiter(server))
        repo.promote(export(3), {"run_id": "r3"}, wait=waiter(server))
        served.signatures.pop(1)  # the server unloaded version 1 when it left models.config
        restored = repo.rollback(wait=waiter(server))
    assert restored.version == 2
    assert loader.champion_when_loaded[1] == 3  # version 1 came back before the label moved
    assert repo.served() == Served((2, 1), {"champion": 2, "previous": 1})
