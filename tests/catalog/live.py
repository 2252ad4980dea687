"""The catalog as it runs in production: a real gunicorn serving ``catalog.wsgi`` on 127.0.0.1.

:class:`LiveCatalog` makes an installation of its own (``IMGTAG_HOME`` in a temporary folder,
migrated with ``imgtag migrate``, a content manager made with ``imgtag createuser``), on the
SQLite file by default, or on a fresh PostgreSQL database made for it (and dropped after) when
the test run's ``DATABASE_URL`` is PostgreSQL, then starts gunicorn with a secret key of its own.
Uploads go to a broker that is not there (``IMGTAG_AMQP_URL`` on a closed port): they are stored
and stay ``pending``, which is what these tests need (no model is loaded).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.postgres import fresh_database

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-test-password-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(key)


class LiveCatalog:
    """A migrated catalog with one content manager (``token``), served by gunicorn.

    Args:
        root: a temporary folder of the test's.
        env: more environment for the server and the commands (``IMGTAG_*`` settings).
        threads: gunicorn threads of its one worker (the catalog pod runs 4 in each of 2 workers).
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None, *, workers: int = 1, threads: int = 4):
        self.root = root
        self.home = root / "home"
        self.database = None  # a PostgreSQL database made for this server, dropped by stop()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("IMGTAG_", "DATABASE_URL", "DJANGO_"))
        }
        self.env.update(
            IMGTAG_HOME=str(self.home),
            IMGTAG_SECRET_KEY=secrets.token_urlsafe(50),
            IMGTAG_UPLOAD_TAGGING="queue",
            IMGTAG_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",  # nothing listens
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONUNBUFFERED="1",
        )
        if os.environ.get("IMGTAG_CACHE_DIR"):  # the suite's converted models, not the thumbnails
            self.env["IMGTAG_CACHE_DIR"] = str(root / "cache")
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith(("postgres://", "postgresql://")):
            self.database = self._fresh_postgres(url)
            self.env["DATABASE_URL"] = self.database
        self.env.update(env or {})
        self.workers, self.threads = workers, threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.log = root / "gunicorn.log"
        self.token = ""

    def _fresh_postgres(self, url: str) -> str:
        self._database = fresh_database("imgtag_live", url.rsplit("/", 1)[0])
        return self._database.__enter__()[0]

    def imgtag(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "imgtag"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=300,
        )
        assert done.returncode == 0, f"imgtag {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
        return done

    def start(self) -> LiveCatalog:
        self.imgtag("migrate")
        made = self.imgtag("createuser", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        self.token = made.stdout.rsplit("API token:", 1)[1].strip()
        command = [
            str(BIN / "gunicorn"),
            "catalog.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--timeout",
            "120",
            "--worker-tmp-dir",
            "/dev/shm",
            "--log-level",
            "info",
        ]
        with self.log.open("wb") as log:
            self.server = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while True:
            assert self.server.poll() is None, f"gunicorn exited: {self.log.read_text()[-3000:]}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200 and self.worker_pids():
                    return self
            assert time.monotonic() < deadline, (
                f"gunicorn did not answer in 90 s: {self.log.read_text()[-3000:]}"
            )
            time.sleep(0.3)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.headers)
        return session

    def sign_in(self) -> requests.Session:
        """A browser's session, signed in on the web pages as alice."""
        session = requests.Session()
        page = session.get(f"{self.url}/accounts/login/", timeout=30)
        session.post(
            f"{self.url}/accounts/login/",
            data={
                "username": "alice",
                "password": PASSWORD,
                "csrfmiddlewaretoken": page.cookies["csrftoken"],
            },
            headers={"Referer": f"{self.url}/accounts/login/"},
            timeout=30,
        ).raise_for_status()
        assert "sessionid" in session.cookies, "signing in as alice failed"
        return session

    def worker_pids(self) -> list[int]:
        """The gunicorn master's worker processes."""
        pids: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.server.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    @staticmethod
    def rss(pid: int) -> int:
        """Bytes resident now."""
        return _kib(pid, "VmRSS") * 1024

    @staticmethod
    def peak(pid: int) -> int:
        """The most bytes ``pid`` has held resident (``VmHWM``)."""
        return _kib(pid, "VmHWM") * 1024

    def stop(self) -> str:
        """Stop gunicorn (and drop its database); returns its log."""
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
        if self.database:
            self._database.__exit__(None, None, None)
            self.database = None
        return self.log.read_text() if self.log.exists() else ""
