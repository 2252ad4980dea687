"""Checks of the deployment files under ``infra/``: they render, validate and pass the linters.

The checkers are real tools, found by ``make tools`` (or on ``PATH``):

- ``kubectl kustomize`` renders the overlays (kubectl ships kustomize);
- ``promtool`` from Debian's ``prometheus`` package (``IMGTAG_PROMTOOL``);
- ``checkov`` in its own venv (``IMGTAG_CHECKOV``).

A missing tool fails the test under ``CI=true`` (naming the tool and how to get it) and skips
it elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
OVERLAYS = ("dev", "prod")


def tool(name: str, variable: str | None, how: str) -> str:
    """The path of a checker: ``$variable`` if it is set and exists, else ``name`` on PATH."""
    candidates = [os.environ.get(variable, "")] if variable else []
    for candidate in [*candidates, shutil.which(name) or ""]:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    problem = f"{name} is not installed: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl", None, "install kubectl (it carries kustomize) to render infra/k8s")


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool", "IMGTAG_PROMTOOL", "run 'make tools' (Debian's prometheus package)")


@pytest.fixture(scope="session")
def checkov() -> str:
    return tool("checkov", "IMGTAG_CHECKOV", "run 'make tools' (checkov in .venv-checkov)")


def render(kubectl: str, folder: Path) -> list[dict]:
    """The objects ``kubectl kustomize folder`` renders."""
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {folder.relative_to(ROOT)}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl) -> dict[str, list[dict]]:
    """``{overlay: objects}`` for every overlay under ``infra/k8s/overlays``."""
    return {overlay: render(kubectl, K8S / "overlays" / overlay) for overlay in OVERLAYS}
