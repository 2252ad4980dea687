"""The Airflow REST client: signs in once with the simple auth manager's password, then sends
each call with its JWT; a missing password says what to wait for."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.airflow_client import AirflowAPI, AirflowError, airflow_password


class _Airflow(BaseHTTPRequestHandler):
    """Answers /auth/token for admin/secret, and echoes every other call with what it carried."""

    calls: list[dict]

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append(
            {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization")}
        )
        if self.path == "/auth/token":
            ok = body == {"username": "admin", "password": "secret"}
            self._answer(201 if ok else 401, {"access_token": "jwt-1"} if ok else {"detail": "bad"})
        else:
            self._answer(200, {"method": self.command, "path": self.path, "body": body})

    do_GET = do_POST = do_PATCH = _handle

    def log_message(self, *args) -> None:  # quiet test output
        pass


@pytest.fixture()
def airflow():
    calls: list[dict] = []
    handler = type("Handler", (_Airflow,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", calls
    server.shutdown()
    server.server_close()


def test_signs_in_once_and_sends_the_token_with_every_call(airflow):
    url, calls = airflow
    api = AirflowAPI(url, "admin", "secret")
    listed = api.get("/api/v2/dags", limit=100, tags=["a", "b"])
    assert listed["path"] == "/api/v2/dags?limit=100&tags=a&tags=b"
    assert api.patch("/api/v2/dags/x/dagRuns/r", {"note": "passed"})["body"] == {"note": "passed"}
    assert api.post("/api/v2/dags/x/dagRuns", {"conf": {}})["method"] == "POST"
    assert [c["path"] for c in calls].count("/auth/token") == 1
    assert [c["auth"] for c in calls if c["path"] != "/auth/token"] == ["Bearer jwt-1"] * 3


def test_a_wrong_password_is_an_http_error(airflow):
    url, _ = airflow
    with pytest.raises(urllib.error.HTTPError) as raised:
        AirflowAPI(url, "admin", "wrong").get("/api/v2/dags")
    assert raised.value.code == 401


def test_the_password_comes_from_the_simple_auth_manager_file(tmp_path):
    path = tmp_path / "simple_auth_manager_passwords.json.generated"
    with pytest.raises(AirflowError, match="is the api-server up"):
        airflow_password(path)
    path.write_text(json.dumps({"admin": "s3cret"}))
    assert airflow_password(path) == "s3cret"
    with pytest.raises(AirflowError, match="'viewer'"):
        airflow_password(path, "viewer")
