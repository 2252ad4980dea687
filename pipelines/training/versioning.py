"""The ``version`` stage: DVC tracks the dataset folder; its hash names the data a model saw.

The runs folder (``IMGTAG_RUNS_DIR``) is a DVC repository (made on first use, ``--no-scm``:
the runs are not a git checkout). ``dvc add <run>/dataset`` writes ``<run>/dataset.dvc``
whose ``md5`` (DVC's hash of the whole folder) is the dataset hash the training run and the
registered model carry. With ``IMGTAG_DVC_REMOTE`` set (the default is a folder under
``IMGTAG_HOME``; ``s3://...`` in production) the data is pushed there, so
``dvc pull`` brings back exactly the images and manifest of any registered model.

The stage shells out to the ``dvc`` command line, DVC's stable interface (its Python ``Repo``
API is internal).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from core.errors import MissingFile, UsageError
from core.settings import Settings

REMOTE_NAME = "imgtag"


class VersioningError(UsageError, RuntimeError):
    """A DVC command failed; the message quotes it and its output."""


def _dvc(args: list[str], cwd: Path) -> str:
    command = [sys.executable, "-m", "dvc", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-2000:]
        raise VersioningError(f"`dvc {' '.join(args)}` in {cwd} exited with {done.returncode}:\n{output}")
    return done.stdout


def repository_root(dataset_dir: Path, settings: Settings) -> Path:
    """The DVC repository holding ``dataset_dir``: the nearest folder above it with a ``.dvc``
    folder; else the runs folder (when the dataset is inside it) or the dataset's parent,
    initialised now."""
    for parent in dataset_dir.parents:
        if (parent / ".dvc").is_dir():
            return parent
    root = settings.runs_dir if settings.runs_dir in dataset_dir.parents else dataset_dir.parent
    root.mkdir(parents=True, exist_ok=True)
    _dvc(["init", "--no-scm", "--quiet"], root)
    # Hard links instead of copies: the dataset is not doubled on disk (DVC makes it read-only).
    _dvc(["config", "cache.type", "reflink,hardlink,copy"], root)
    return root


def version_dataset(dataset_dir: str | Path, *, remote: str | None = None, settings: Settings) -> dict:
    """``dvc add`` the dataset folder (and ``dvc push`` it when a remote is set).

    Args:
        dataset_dir: a dataset folder written by ``imgtag ingest``.
        remote: a DVC remote URL; default ``IMGTAG_DVC_REMOTE`` (empty: no push).

    Returns:
        The stage summary: ``dataset``, ``dataset_hash``, ``dvc_file``, ``files``, ``bytes``,
        ``repository``, ``remote``, ``pushed``.
    """
    dataset_dir = Path(dataset_dir).resolve()
    if not (dataset_dir / "manifest.jsonl").is_file():
        raise MissingFile(
            f"{dataset_dir}: not a dataset folder (no manifest.jsonl); run `imgtag ingest` first"
        )
    remote = settings.dvc_remote if remote is None else remote
    root = repository_root(dataset_dir, settings)
    target = dataset_dir.relative_to(root).as_posix()
    _dvc(["add", "--quiet", target], root)
    dvc_file = dataset_dir.with_name(dataset_dir.name + ".dvc")
    out = yaml.safe_load(dvc_file.read_text())["outs"][0]
    pushed = False
    if remote:
        if "://" not in remote:
            Path(remote).mkdir(parents=True, exist_ok=True)
        _dvc(["remote", "add", "--force", "--default", REMOTE_NAME, remote], root)
        _dvc(["push", "--quiet", dvc_file.relative_to(root).as_posix()], root)
        pushed = True
    return {
        "dataset": str(dataset_dir),
        "dataset_hash": out["md5"].removesuffix(".dir"),
        "dvc_file": str(dvc_file),
        "files": out.get("nfiles"),
        "bytes": out.get("size"),
        "repository": str(root),
        "remote": remote or None,
        "pushed": pushed,
    }
