"""A small client of Airflow 3's REST API (``/api/v2``), and the ``admin`` password it signs in with.

``imgtag platform`` (:mod:`pipelines.platform`) waits with it until Airflow lists the DAGs, and
the end-to-end tests trigger and follow runs with it. Airflow's simple auth manager keeps the
users' passwords in a JSON file in ``AIRFLOW_HOME`` (the platform makes it before the api-server
starts); a JWT from ``/auth/token`` then signs every call.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

from core.errors import ImgtagError


class AirflowError(ImgtagError, RuntimeError):
    """Airflow cannot be signed in to yet (no password for the user); the message says why."""


def airflow_password(path: Path, user: str = "admin") -> str:
    """The password Airflow's simple auth manager generated for ``user``."""
    try:
        return json.loads(path.read_text())[user]
    except (OSError, ValueError, KeyError) as exc:
        raise AirflowError(
            f"{path}: no password for Airflow's {user!r} user yet (is the api-server up?)"
        ) from exc


class AirflowAPI:
    """A small client of Airflow 3's REST API (``/api/v2``) with a JWT from ``/auth/token``."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read() or b"{}")

    def token(self) -> str:
        """The JWT every call sends, asked for once with the user's name and password."""
        if self._token is None:
            self._token = self._request("POST", "/auth/token", self._credentials, auth=False)["access_token"]
        return self._token

    def get(self, path: str, **query) -> dict:
        """``GET path?query`` (lists repeat the key), the answer's JSON."""
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> dict:
        """``POST path`` with a JSON ``body``, the answer's JSON."""
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict) -> dict:
        """``PATCH path`` with a JSON ``body``, the answer's JSON."""
        return self._request("PATCH", path, body)
