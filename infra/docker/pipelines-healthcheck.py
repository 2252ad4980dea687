"""Docker HEALTHCHECK of the pipelines image (``imgtag``): true for every way the image runs.

The image runs long-lived workers and one-shot stages alike, so the check looks at which
``imgtag`` command the container runs (its argv, read from ``/proc``):

- ``imgtag worker`` (metrics on 9100 unless ``--metrics-port`` says otherwise), or any command
  given ``--metrics-port N``: healthy when ``http://127.0.0.1:N/metrics`` answers 2xx.
- ``--metrics-port 0`` or a stage without metrics (``import``, ``train``, ``--help`` ...):
  healthy; such a container's health is its exit status.

Kubernetes ignores HEALTHCHECK: the worker Deployment declares its own probes on 9100.
Standard library only; exit status 0 healthy, 1 unhealthy (what Docker expects).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_WORKER_PORT = 9100


def imgtag_argv(proc: Path = Path("/proc")) -> list[str] | None:
    """The argv of the oldest ``imgtag`` process (PID 1 unless an init such as tini runs first)."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        for index, part in enumerate(argv):
            if part == "imgtag" or part.endswith("/imgtag"):
                return argv[index + 1 :]
            if part == "pipelines.cli" and index > 0 and argv[index - 1] == "-m":
                return argv[index + 1 :]
    return None


def metrics_port(args: list[str]) -> int | None:
    """The port the command serves /metrics on, or None when it serves none."""
    port: int | None = DEFAULT_WORKER_PORT if "worker" in args else None
    for index, arg in enumerate(args):
        if arg == "--metrics-port" and index + 1 < len(args):
            port = int(args[index + 1])
        elif arg.startswith("--metrics-port="):
            port = int(arg.split("=", 1)[1])
    return port or None


def main(proc: Path = Path("/proc"), host: str = "127.0.0.1", timeout: float = 3.0) -> int:
    args = imgtag_argv(proc)
    port = metrics_port(args) if args is not None else None
    if port is None:
        return 0
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"unhealthy: http://{host}:{port}/metrics: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
