"""The ``imgtag`` command as a user runs it: real files, a real SQLite catalog, subprocesses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import skimage.data

from core.errors import ExitCode

IMGTAG = [sys.executable, "-m", "pipelines.cli"]


def run(args, home: Path, check_codes=(0,)) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMGTAG_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([*IMGTAG, *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode in check_codes, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder like a user's: photos in subfolders, a duplicate, a broken file, a text file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "pets").mkdir()
    (root / "kitchen" / "mugs").mkdir(parents=True)
    cv2.imwrite(str(root / "pets" / "chelsea.jpg"), cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(
        str(root / "kitchen" / "mugs" / "coffee.png"), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    )
    shutil.copy(root / "pets" / "chelsea.jpg", root / "pets" / "chelsea copy.jpg")
    good = (root / "pets" / "chelsea.jpg").read_bytes()
    (root / "pets" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "notes.txt").write_text("not an image, and not an image extension either")
    return root


@pytest.mark.slow  # loads the full model in a subprocess
def test_tag_json_reports_tags_and_errors_per_file(photos, tmp_path):
    bad = tmp_path / "fake.jpg"
    bad.write_text("hello")
    done = run(["tag", "--json", str(photos / "pets" / "chelsea.jpg"), str(bad)], tmp_path / "home", (1,))
    cat, fake = json.loads(done.stdout)
    assert cat["path"].endswith("chelsea.jpg") and "cat" in [t["name"] for t in cat["tags"]]
    assert all(set(t) == {"name", "score"} for t in cat["tags"])
    assert fake["path"] == str(bad) and "not an image" in fake["error"] and "tags" not in fake
    assert not (tmp_path / "home").exists() or not list(
        (tmp_path / "home").rglob("*.sqlite3")
    )  # stored nothing


@pytest.mark.slow  # loads the full model in a subprocess
def test_a_fresh_install_tags_people(tmp_path):
    """The starter model ships: ``imgtag tag`` on a photo of a person says ``person``, beside
    the general tags, with no training and no promotion."""
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    (astronaut,) = json.loads(run(["tag", "--json", str(path)], tmp_path / "home").stdout)
    assert "person" in [t["name"] for t in astronaut["tags"]]
    shown = run(["starter", "show"], tmp_path / "home").stdout
    assert "person" in shown and "DVC hash" in shown and "MLflow run" in shown


@pytest.mark.slow  # loads the full model in a subprocess
def test_import_twice_then_search(photos, tmp_path):
    home = tmp_path / "home"
    first = json.loads(run(["import", "--json", str(photos)], home, (1,)).stdout)
    assert first["imported"] == 2 and first["duplicates"] == 1
    assert [f["path"] for f in first["failed"]] == [str(photos / "pets" / "broken.jpg")]
    assert "truncated" in first["failed"][0]["error"]

    second = json.loads(run(["import", "--json", str(photos)], home).stdout)
    assert second["imported"] == 0 and second["duplicates"] == 4  # the broken one was kept as failed

    stored = [p for p in (home / "storage").rglob("*") if p.is_file()]
    assert len(stored) == 3  # chelsea, coffee, and the broken original (kept with its error)

    found = json.loads(run(["search", "--json", "cat AND animal"], home).stdout)
    assert found["count"] == 1 and found["count_exact"] is True
    assert found["results"][0]["filename"].startswith("chelsea")
    assert found["results"][0]["tags"][0]["score"] > 0.3
    none = json.loads(run(["search", "--json", "cat AND NOT cat"], home).stdout)
    assert none["count"] == 0

    bad = run(["search", "cat AND (dog"], home, (2,))
    assert "expected" in bad.stderr.lower() or "expected" in bad.stdout.lower()


def test_import_of_a_missing_folder_says_so(tmp_path):
    done = run(["import", str(tmp_path / "nowhere")], tmp_path / "home", (2,))
    assert "nowhere: no such file or folder" in done.stderr


def test_help_explains_every_command(tmp_path):
    text = run(["--help"], tmp_path).stdout
    for command in ("tag", "import", "search", "serve", "createuser"):
        assert command in text


#: ``imgtag --help``'s sections: each audience and its commands, in order.
AUDIENCES = {
    "Catalog users": ["tag", "import", "search", "serve", "migrate", "createuser", "similar", "embeddings"],
    "Queue operators": ["drain", "worker", "requeue", "dead"],
    "Data scientists and MLOps": [
        "ingest",
        "validate",
        "version",
        "train",
        "evaluate",
        "register",
        "gate",
        "promote",
        "rollback",
        "models",
        "starter",
    ],
    "The platform": ["platform"],
}


def help_sections(text: str) -> dict[str, list[str]]:
    """The command names under each ``Section:`` heading of a help text."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  ") and not line.startswith("   "):
            current.append(line.split()[0])
    return sections


def test_help_lists_every_command_under_its_audience():
    from typer.testing import CliRunner

    from pipelines.cli import app

    done = CliRunner().invoke(app, ["--help"])
    assert done.exit_code == 0, done.output
    sections = help_sections(done.stdout)
    assert sections.pop("Options") == ["--help"]
    assert sections == AUDIENCES
    assert sorted(sum(AUDIENCES.values(), [])) == sorted(app_commands())


def app_commands() -> list[str]:
    import typer

    from pipelines.cli import app

    return list(typer.main.get_command(app).commands)


def invoke(*args: str):
    from typer.testing import CliRunner

    from pipelines.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_project_error_is_one_red_line_with_its_exit_code(monkeypatch, tmp_path):
    """A service that does not answer: exit 75 (try again later), the message, no traceback."""
    from core.broker import BrokerUnavailable
    from pipelines.tagging import requeue

    def unreachable(*args, **kwargs):
        raise BrokerUnavailable("RabbitMQ at 127.0.0.1:1 is not reachable; start it or set IMGTAG_AMQP_URL")

    monkeypatch.setattr(requeue, "dead_letters", unreachable)
    done = invoke("dead", "list")
    assert done.exit_code == 75 == ExitCode.UNAVAILABLE
    assert done.stderr == "RabbitMQ at 127.0.0.1:1 is not reachable; start it or set IMGTAG_AMQP_URL\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "error, code",
    [
        ("core.errors.UsageError", 2),
        ("core.imageio.NotAnImageError", 2),
        ("pipelines.training.dataset.DatasetError", 2),
        ("core.broker.QueueMismatch", 2),
        ("serving.predictors.ServingUnavailable", 75),
        ("pipelines.platform.PlatformError", 1),
        ("pipelines.airflow_client.AirflowError", 1),
    ],
)
def test_each_project_error_ends_the_command_with_its_code(monkeypatch, error, code):
    import importlib

    from pipelines.tagging import requeue

    module, name = error.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    exc = cls("x.jpg", "what went wrong; what to do") if name == "NotAnImageError" else cls("what to do")

    def raising(*args, **kwargs):
        raise exc

    monkeypatch.setattr(requeue, "replay_dead", raising)
    done = invoke("dead", "replay")
    assert done.exit_code == code, done.output
    assert done.stderr.count("\n") == 1 and "what to do" in done.stderr


def test_a_bug_shows_its_traceback_not_a_tidy_exit(tmp_path):
    """A plain ValueError from inside a stage is a bug: the traceback, exit 1, never a usage error."""
    script = (
        "import sys\n"
        "from pipelines.tagging import requeue\n"
        "def broken(*args, **kwargs):\n"
        "    raise ValueError('a bug, not a bad input')\n"
        "requeue.dead_letters = broken\n"
        "from pipelines.cli import main\n"
        "sys.argv = ['imgtag', 'dead', 'list']\n"
        "main()\n"
    )
    env = {**os.environ, "IMGTAG_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: a bug, not a bad input" in done.stderr
    assert "dead_list" in done.stderr  # where it happened


def test_an_unreachable_broker_exits_75(tmp_path):
    env_home = tmp_path / "home"
    done = subprocess.run(
        [*IMGTAG, "dead", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "IMGTAG_HOME": str(env_home),
            "IMGTAG_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
        },
    )
    assert done.returncode == ExitCode.UNAVAILABLE == 75, done.stderr
    assert "127.0.0.1:1 is not reachable" in done.stderr and "Traceback" not in done.stderr


def test_a_rejected_challenger_exits_3_with_the_summary(monkeypatch):
    """The training DAG skips promotion on exit 3; the summary still goes to stdout."""
    from pipelines.training import gate

    class Rejected:
        passed = False
        reason = "map 0.41 does not beat champion 0.62 by 0.01"

        def to_dict(self):
            return {"passed": False, "reason": self.reason}

    monkeypatch.setattr(gate, "gate", lambda *args, **kwargs: Rejected())
    done = invoke("gate", "7", "some/dataset", "--json")
    assert done.exit_code == ExitCode.GATE_REJECTED == 3, done.output
    assert json.loads(done.stdout) == {"passed": False, "reason": Rejected.reason}
    assert "gate rejected model version 7" in done.stderr


def test_settings_are_read_once_per_invocation(monkeypatch):
    """Every stage of one command gets the same Settings; the next command reads the environment again."""
    from core.settings import Settings
    from pipelines.tagging import requeue

    seen = []
    monkeypatch.setattr(
        requeue, "replay_dead", lambda settings, limit: seen.append(settings) or {"replayed": 0}
    )
    monkeypatch.setenv("IMGTAG_QUEUE", "imgtag.first")
    assert invoke("dead", "replay").exit_code == 0
    monkeypatch.setenv("IMGTAG_QUEUE", "imgtag.second")
    assert invoke("dead", "replay").exit_code == 0
    assert [type(s) for s in seen] == [Settings, Settings]
    assert [s.queue for s in seen] == ["imgtag.first", "imgtag.second"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.rabbitmq  # publishes to the real broker itself, without the rabbitmq fixture
def test_createuser_then_serve_upload_and_search_over_http(photos, tmp_path):
    """What a client of the REST API does: get a token, upload (published to RabbitMQ, which
    must be on 127.0.0.1:5672), let the consumer drain, find the upload by tag."""
    import time

    import requests

    home = tmp_path / "home"
    created = run(["createuser", "robot"], home).stdout  # a content manager: may upload
    token = created.strip().rsplit(" ", 1)[-1]
    assert "API token" in created and "content_manager" in created and len(token) == 40
    auth = {"Authorization": f"Token {token}"}

    port = free_port()
    queue = f"test.serve.{port}"
    env = {**os.environ, "IMGTAG_HOME": str(home), "IMGTAG_QUEUE": queue}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [*IMGTAG, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{base}/tags/", headers=auth, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("imgtag serve did not answer within 60 s")
        image = (photos / "kitchen" / "mugs" / "coffee.png").read_bytes()
        anonymous = requests.post(f"{base}/assets/", files={"files": ("coffee.png", image)}, timeout=60)
        assert anonymous.status_code == 401
        assert requests.get(f"{base}/assets/", timeout=30).status_code == 401  # reads need a user too
        upload = requests.post(
            f"{base}/assets/",
            files={"files": ("coffee.png", image)},
            headers=auth,
            timeout=120,
        )
        assert upload.status_code == 201, upload.text
        assert upload.json()["assets"][0]["status"] == "pending"  # published; a worker tags it
        drained = subprocess.run(
            [*IMGTAG, "drain", "--json"], env=env, capture_output=True, text=True, timeout=300
        )
        assert json.loads(drained.stdout)["tagged"] == 1, drained.stderr
        found = requests.get(
            f"{base}/assets/", params={"q": "coffee OR cup"}, headers=auth, timeout=30
        ).json()
        assert [a["filename"] for a in found["results"]] == ["coffee.png"]
        schema = requests.get(f"{base}/schema/", headers=auth, timeout=30)
        assert schema.status_code == 200 and "/api/assets/" in schema.text
        # the web pages and their static files are served too (WhiteNoise, no collectstatic)
        root = base.removesuffix("/api")
        login = requests.get(f"{root}/accounts/login/", timeout=30)
        assert login.status_code == 200 and 'data-testid="login-submit"' in login.text
        css = requests.get(f"{root}/static/catalog/app.css", timeout=30)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        assert requests.get(f"{root}/", allow_redirects=False, timeout=30).headers["Location"] == (
            "/accounts/login/?next=/"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        import pika

        connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F"))
        channel = connection.channel()
        for name in (queue, f"{queue}.dead", f"{queue}.suspect"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dead")
        connection.close()
