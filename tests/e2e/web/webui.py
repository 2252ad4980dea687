"""What the browser tests share: a private imgtag installation run as subprocesses, test images,
and the step recorder whose screenshots land in ``tests/artifacts/<test>/`` when a test fails.

The installation is black-box: ``imgtag createuser``, ``imgtag serve`` and ``imgtag worker``
run as a user runs them, with their own ``IMGTAG_HOME`` and tagging queue, against the real
RabbitMQ; the tests see only HTTP.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import requests
import skimage.data
from playwright.sync_api import Error as PlaywrightError

IMGTAG = [sys.executable, "-m", "pipelines.cli"]
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jpeg(image_rgb) -> bytes:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    return encoded.tobytes()


def png(image_rgb) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def chelsea_jpeg() -> bytes:
    """A real photo of a cat (scikit-image's Chelsea)."""
    return jpeg(skimage.data.chelsea())


def coffee_png() -> bytes:
    """A real photo of a cup of coffee."""
    return png(skimage.data.coffee())


@dataclass
class User:
    name: str
    password: str
    token: str

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Token {self.token}"}


class Installation:
    """One imgtag installation: its own catalog, originals, queue, server and worker."""

    def __init__(self, home: Path, queue: str, amqp_url: str):
        self.home = home
        self.queue = queue
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.vars = {
            **os.environ,
            "IMGTAG_HOME": str(home),
            "IMGTAG_QUEUE": queue,
            "IMGTAG_AMQP_URL": amqp_url,
            "IMGTAG_UPLOAD_TAGGING": "queue",
            "IMGTAG_BATCH_SIZE": "4",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "IMGTAG_STORAGE_URL", "DJANGO_SETTINGS_MODULE"):
            self.vars.pop(name, None)
        self.processes: dict[str, subprocess.Popen] = {}
        self.alice: User | None = None  # the users the fixture creates
        self.bob: User | None = None

    def run(self, *args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*IMGTAG, *args],
            check=False,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.vars,
            cwd=REPO,
        )
        assert done.returncode == 0, (
            f"imgtag {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def createuser(self, name: str, role: str, password: str) -> User:
        """``imgtag createuser NAME --role ROLE --password-stdin``; returns the user and its token."""
        done = self.run("createuser", name, "--role", role, "--password-stdin", stdin=password + "\n")
        found = re.search(r"token:\s*([0-9a-f]{40})", done.stdout + done.stderr)
        assert found, f"no API token in the output of imgtag createuser:\n{done.stdout}\n{done.stderr}"
        return User(name, password, found.group(1))

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as log:  # not a pipe: a full pipe would block the server
            process = subprocess.Popen(
                [*IMGTAG, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.vars,
                cwd=REPO,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str, last: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-last:] if path.exists() else ""

    def serve(self, timeout: float = 90) -> None:
        """Start ``imgtag serve`` on a free port and wait until ``/healthz`` answers 200."""
        process = self.start("serve", "serve", "--host", "127.0.0.1", "--port", str(self.port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"imgtag serve exited with {process.returncode}:\n{self.log('serve')}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"imgtag serve did not answer /healthz within {timeout} s:\n{self.log('serve')}")

    def check_running(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, (
                f"imgtag {name} exited with {process.returncode}:\n{self.log(name)}"
            )

    def stop(self) -> None:
        """SIGTERM every process (the worker finishes its batch), then SIGKILL what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # --- the REST API, as a client sees it ---

    def api(self, method: str, path: str, user: User | None = None, **kwargs) -> requests.Response:
        headers = {**(user.auth if user else {}), **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def upload(self, user: User, name: str, data: bytes, content_type: str) -> dict:
        answer = self.api("POST", "/api/assets/", user, files=[("files", (name, data, content_type))])
        assert answer.status_code == 201, f"upload of {name}: {answer.status_code} {answer.text}"
        return answer.json()["assets"][0]

    def wait_tagged(self, asset_id: int, user: User, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            asset = self.api("GET", f"/api/assets/{asset_id}/", user).json()
            if asset["status"] != "pending" or time.monotonic() > deadline:
                break
            self.check_running()
            time.sleep(0.5)
        assert asset["status"] == "tagged", f"asset {asset_id} is {asset['status']}:\n{self.log('worker')}"
        return asset


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text)


class Steps:
    """Screenshots of each step of a test, written out only when the test fails."""

    def __init__(self, test_name: str, site: Installation | None = None):
        self.name = _slug(test_name)
        self.site = site
        self.page = None
        self.shots: list[tuple[str, bytes]] = []
        self.html: tuple[str, str] | None = None

    def __call__(self, name: str, page=None) -> None:
        """Record step ``name`` as ``page`` (or the page of the previous step) shows it now."""
        self.page = page or self.page
        if self.page is None:
            return
        self.shots.append((name, self.page.screenshot(full_page=True)))
        self.html = (name, self.page.content())

    def save(self) -> Path:
        folder = ARTIFACTS / self.name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        try:  # how the page looked when the test failed
            if self.page is not None and not self.page.is_closed():
                self("failed")
        except PlaywrightError as exc:  # the browser may be what failed
            (folder / "screenshot-error.txt").write_text(repr(exc))
        for number, (step, shot) in enumerate(self.shots, 1):
            (folder / f"{number:02d}-{_slug(step)}.png").write_bytes(shot)
        if self.html:
            (folder / f"{len(self.shots):02d}-{_slug(self.html[0])}.html").write_text(self.html[1])
        if self.site is not None:
            for log in ("serve", "worker"):
                (folder / f"{log}.log").write_text(self.site.log(log, last=200_000))
        return folder
