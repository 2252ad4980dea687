"""The TF Serving model repository: numbered SavedModel versions, ``models.config``, version labels.

Layout on a local (or mounted shared) filesystem::

    <base>/models.config                     ModelServerConfig, protobuf text format
    <base>/<name>/<version>/                 a SavedModel: saved_model.pb, variables/, assets/,
                                             assets.extra/imgtag_promotion.json
    <base>/<name>/promotions.jsonl           one line per promotion or rollback
    <base>/<name>/.lock                      flock(2) taken by promote() and rollback()
    <base>/<name>/.staging-<v>-<pid>-<hex>/  a version being copied (TF Serving skips non-numeric dirs)

A version appears atomically: the SavedModel is copied into a staging directory beside the
version directories (same filesystem), every file is fsynced, then one ``os.rename`` gives it
its number. A poller (TF Serving's file-system source, or anyone listing the directory) never
sees half a version. ``models.config`` is rewritten the same way (temporary file in ``<base>``,
fsync, ``os.replace``), so TF Serving polling it (``--model_config_file_poll_wait_seconds``)
reads either the old file or the new one.

The config serves two versions of the model, the ``champion`` and the ``previous`` champion
(``model_version_policy { specific { ... } }``), and labels them, so clients can ask for
``/v1/models/<name>/labels/champion`` or pin a number. Rolling back points ``champion`` at the
version that was champion before, found in ``promotions.jsonl``; rolled-back versions stay on
disk for forensics, but leave the config and so stop being served.

Version labels and TF Serving: TF Serving refuses (FAILED_PRECONDITION) a config whose label
points at a version it has not loaded, and a refused config is not applied at all, so the new
version would never load. ``--allow_version_labels_for_unavailable_models`` does not help for a
promotion: it admits a new label, not *moving* ``champion`` to a loading version. So a label
moves in two config writes: the new version is first served unlabelled beside the current
ones, and once the server reports it AVAILABLE (``wait``, :func:`serving.predictors.wait_until_available`
with ``IMGTAG_SERVING_STATUS_URL``) the labels move. Without a server (one machine) both
writes follow each other at once.

Locking uses ``fcntl.flock`` on ``<base>/<name>/.lock``: it excludes other processes and other
threads (each call opens its own file description). On NFS, Linux emulates flock with POSIX
byte-range locks, which NFSv4 supports; object stores (``s3://``) are for TF Serving's view of
the repository only (``serving_base_path``), not for writing it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import atomic
from core.errors import UsageError

if TYPE_CHECKING:
    from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger(__name__)

CONFIG_FILENAME = "models.config"
PROMOTIONS_FILENAME = "promotions.jsonl"
PROMOTION_ASSET = "imgtag_promotion.json"
CHAMPION = "champion"
PREVIOUS = "previous"
MODEL_PLATFORM = "tensorflow"
STAGING_PREFIX = ".staging-"

_VERSION_DIR = re.compile(r"[0-9]+")


class RepositoryError(UsageError, RuntimeError):
    """The repository cannot do what was asked (nothing to roll back to, not a SavedModel ...)."""


@dataclasses.dataclass(frozen=True)
class Promotion:
    """A version of a model that is (or just became) the champion.

    Attributes:
        name: the model's name in the repository.
        version: the version number (its directory name).
        path: the local path of the version directory.
        previous: the version labelled ``previous`` alongside it, if any.
        metadata: what the promoter recorded (MLflow run id, model URI, metrics ...).
    """

    name: str
    version: int
    path: Path
    previous: int | None
    metadata: dict = dataclasses.field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``path`` as a string)."""
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "previous": self.previous,
            "metadata": dict(self.metadata),
        }


@dataclasses.dataclass(frozen=True)
class Served:
    """What ``models.config`` serves of one model (:meth:`ModelRepository.served`).

    Attributes:
        versions: the version numbers its ``model_version_policy`` serves, champion first.
        labels: its version labels (``champion``, ``previous``) and the versions they name.
    """

    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)


def _config_protos():
    """TF Serving's ModelServerConfig classes and protobuf's text format, imported on first use.

    Reading and writing ``models.config`` needs them. They come with ``tensorflow-serving-api``
    (setup.cfg's ``tagger`` extra); its config protos import protobuf alone, not TensorFlow, so
    the catalog's image installs that package without its dependencies to read the labels.
    """
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:
        raise UsageError(
            f"writing or parsing models.config needs TF Serving's protos ({exc.name} is missing): "
            "install imgtag's `tagger` extra (pip install 'imgtag[tagger]')"
        ) from exc
    return model_server_config_pb2, text_format


def read_models_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parse a ``models.config`` file (ModelServerConfig in protobuf text format).

    Args:
        path: the file.

    Returns:
        The parsed config.

    Raises:
        FileNotFoundError: no such file.
        RepositoryError: the file is not a valid ModelServerConfig.
    """
    text = Path(path).read_text(encoding="utf-8")
    model_server_config_pb2, text_format = _config_protos()
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(f"{path}: not a valid ModelServerConfig: {exc}") from exc


def models_config_text(config: model_server_config_pb2.ModelServerConfig) -> str:
    """The protobuf text format of a ModelServerConfig, as TF Serving's ``--model_config_file`` reads it.

    Args:
        config: the config.

    Returns:
        The text, ending with a newline.
    """
    _, text_format = _config_protos()
    return text_format.MessageToString(config)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (directories after their contents)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for filename in filenames:
            _fsync_path(Path(dirpath) / filename)
        _fsync_path(Path(dirpath))


def _copy_file(src: str, dst: str) -> str:
    # Looked up at call time, so a test can make shutil.copy2 fail midway.
    return shutil.copy2(src, dst)


def _check_saved_model(source: Path) -> None:
    """Raise :class:`RepositoryError` unless ``source`` is a SavedModel directory."""
    if not source.is_dir():
        raise RepositoryError(f"{source}: no such directory; expected a SavedModel directory")
    if not (source / "saved_model.pb").is_file():
        raise RepositoryError(f"{source}: not a SavedModel (no saved_model.pb)")


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


class ModelRepository:
    """One model's numbered versions in a TF Serving model repository, and the shared ``models.config``.

    Args:
        base: the repository root (``IMGTAG_MODEL_BASE``), on a local or mounted filesystem.
        name: the model's name, in the repository and in TF Serving's URLs.
        serving_base_path: how TF Serving sees ``base`` (``/models`` in its container,
            ``s3://bucket/models``); the config's ``base_path`` is this plus ``/<name>``.
            Default: the absolute local path of ``base``.
    """

    def __init__(self, base: str | Path, name: str = "imgtag-tagger", serving_base_path: str | None = None):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid model name {name!r}")
        self.base = Path(base).absolute()
        self.name = name
        self.serving_base_path = (serving_base_path or str(self.base)).rstrip("/") or "/"
        self.model_dir = self.base / name
        self.config_path = self.base / CONFIG_FILENAME
        self.log_path = self.model_dir / PROMOTIONS_FILENAME
        self.lock_path = self.model_dir / ".lock"

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.base)!r}, name={self.name!r})"

    @property
    def serving_model_path(self) -> str:
        """The model's ``base_path`` in ``models.config``: where TF Serving finds the version dirs."""
        return f"{self.serving_base_path.rstrip('/')}/{self.name}"

    # ---- reading -------------------------------------------------------------------------

    def path(self, version: int) -> Path:
        """The local directory of a version (whether or not it exists).

        Args:
            version: the version number.

        Returns:
            ``<base>/<name>/<version>``.
        """
        if int(version) < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        return self.model_dir / str(int(version))

    def _numbered_dirs(self) -> list[int]:
        try:
            entries = list(os.scandir(self.model_dir))
        except FileNotFoundError:
            return []
        return sorted(int(e.name) for e in entries if _VERSION_DIR.fullmatch(e.name) and e.is_dir())

    def versions(self) -> list[int]:
        """The complete versions present on disk, ascending (staging dirs are not versions).

        Returns:
            Version numbers whose directory holds a SavedModel.
        """
        return [v for v in self._numbered_dirs() if _is_saved_model(self.path(v))]

    def read_config(self) -> model_server_config_pb2.ModelServerConfig | None:
        """The current ``models.config``, or None when there is none yet."""
        try:
            return read_models_config(self.config_path)
        except FileNotFoundError:
            return None

    def _model_entry(self, config: model_server_config_pb2.ModelServerConfig | None):
        if config is None:
            return None
        for entry in config.model_config_list.config:
            if entry.name == self.name:
                return entry
        return None

    def served(self) -> Served:
        """What ``models.config`` serves of this model: its version numbers and their labels.

        The one place versions and labels are read: promotion, rollback, ``imgtag models`` and
        the predictors all ask here. Parsed with TF Serving's own protos, as the server reads it
        (comments, other models, either syntax).

        Returns:
            The served versions and labels; empty when there is no config or no entry for
            this model.

        Raises:
            RepositoryError: the file is not a valid ModelServerConfig.
            UsageError: TF Serving's protos are not installed.
        """
        entry = self._model_entry(self.read_config())
        if entry is None:
            return Served()
        return Served(tuple(entry.model_version_policy.specific.versions), dict(entry.version_labels))

    def version_metadata(self, version: int) -> dict:
        """The promotion record a version carries in ``assets.extra/imgtag_promotion.json``.

        Args:
            version: the version number.

        Returns:
            ``{"name", "version", "promoted_at", "metadata"}``, or ``{}`` when the file is absent
            (a version copied in by hand).
        """
        try:
            return json.loads((self.path(version) / "assets.extra" / PROMOTION_ASSET).read_text("utf-8"))
        except FileNotFoundError:
            return {}

    def _promotion(self, version: int, previous: int | None) -> Promotion:
        record = self.version_metadata(version)
        return Promotion(self.name, version, self.path(version), previous, dict(record.get("metadata", {})))

    def current(self) -> Promotion | None:
        """The version labelled ``champion`` in ``models.config``.

        Returns:
            The champion, or None when there is no config or no champion for this model.
        """
        labels = self.served().labels
        if CHAMPION not in labels:
            return None
        return self._promotion(labels[CHAMPION], labels.get(PREVIOUS))

    def history(self) -> list[dict]:
        """The entries of ``promotions.jsonl``, oldest first.

        Each is ``{"action": "promote"|"rollback", "version", "previous", "at", "metadata"}``;
        a rollback also names the version it replaced as ``rolled_back``. A torn last line (a
        crash while appending) is skipped; damage anywhere else raises RepositoryError.
        """
        try:
            lines = self.log_path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    log.warning("%s: skipping torn last line %d", self.log_path, number)
                    continue
                raise RepositoryError(f"{self.log_path}:{number}: not JSON: {exc}") from exc
        return entries

    def _champion_stack(self, history: list[dict]) -> list[int]:
        """Replay the log: a promotion pushes its version, a rollback pops the champion."""
        stack: list[int] = []
        for entry in history:
            if entry.get("action") == "promote":
                stack.append(int(entry["version"]))
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        return stack

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _next_version(self, history: list[dict]) -> int:
        used = set(self._numbered_dirs())
        used.update(int(e["version"]) for e in history if "version" in e)
        used.update(int(e["rolled_back"]) for e in history if "rolled_back" in e)
        return max(used, default=0) + 1

    def _switch(self, champion: int, previous: int | None, wait: Callable[[int], None] | None) -> None:
        """Serve ``champion`` (and ``previous``) under their labels, in two steps when a server loads them.

        TF Serving refuses a config whose label names a version it has not loaded (and then
        keeps serving the old config, so the new version would never load). So a version not
        served yet is first added beside the served ones with the labels unchanged, ``wait``
        returns once the server has it, and only then do the labels move.

        Raises:
            RepositoryError: from ``wait``: the server did not load a version (the labels stay).
        """
        served = self.served()
        labels = served.labels
        wanted = [champion] if previous is None else [champion, previous]
        new = [version for version in wanted if version not in served.versions]
        if new and labels:
            self._write_config(labels[CHAMPION], labels.get(PREVIOUS), also=new)
            for version in new:
                if wait is not None:
                    wait(version)
        self._write_config(champion, previous)

    def _write_config(self, champion: int, previous: int | None, also: list[int] = ()) -> None:
        """Point this model's config entry at ``champion`` (and ``previous``), serving the
        versions in ``also`` too, unlabelled; other models untouched."""
        model_server_config_pb2, _ = _config_protos()
        config = self.read_config() or model_server_config_pb2.ModelServerConfig()
        if config.WhichOneof("config") == "custom_model_config":
            raise RepositoryError(
                f"{self.config_path} holds a custom_model_config; expected a model_config_list"
            )
        entry = self._model_entry(config)
        if entry is None:
            entry = config.model_config_list.config.add()
            entry.name = self.name
        entry.base_path = self.serving_model_path
        entry.model_platform = MODEL_PLATFORM
        entry.ClearField("model_type")  # deprecated, and conflicts with model_platform
        versions = [champion] if previous is None else [champion, previous]
        versions += [version for version in also if version not in versions]
        entry.model_version_policy.Clear()
        entry.model_version_policy.specific.versions.extend(versions)
        # The repository owns this model's labels: a stale one pointing at an unserved version
        # would make TF Serving reject the whole config.
        entry.ClearField("version_labels")
        entry.version_labels[CHAMPION] = champion
        if previous is not None:
            entry.version_labels[PREVIOUS] = previous
        self.base.mkdir(parents=True, exist_ok=True)
        atomic.write(self.config_path, models_config_text(config), sync_folder=True)

    def _append_log(self, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        with open(self.log_path, "a+b") as handle:
            handle.seek(0)
            content = handle.read()
            if content and not content.endswith(b"\n"):
                # A torn last line, left by a crash while appending (history() skips it): drop
                # it, or it would end up in the middle of the log, glued to this entry.
                keep = content.rfind(b"\n") + 1
                log.warning("%s: dropping torn last line %r", self.log_path, content[keep:])
                handle.truncate(keep)
            handle.write(line)  # "a" mode: always at the end
            handle.flush()
            os.fsync(handle.fileno())

    def _stage(self, source: Path, version: int, record: dict) -> Path:
        """Copy ``source`` into a staging dir, add the promotion record, fsync, rename to ``version``."""
        staging = self.model_dir / f"{STAGING_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}"
        final = self.path(version)
        try:
            shutil.copytree(source, staging, copy_function=_copy_file, symlinks=False)
            extra = staging / "assets.extra"
            extra.mkdir(exist_ok=True)
            (extra / PROMOTION_ASSET).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", "utf-8")
            _fsync_tree(staging)
            if final.exists():  # os.rename would silently replace an empty directory
                raise RepositoryError(f"{final} appeared while staging version {version}")
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_path(self.model_dir)
        return final

    def promote(
        self,
        saved_model_dir: str | Path,
        metadata: dict,
        *,
        version: int | None = None,
        wait: Callable[[int], None] | None = None,
    ) -> Promotion:
        """Serve a SavedModel as ``version`` (default: the next number) and make it the champion.

        The copy appears under its number in one rename; ``models.config`` then serves it
        (label ``champion``) next to the champion it replaces (label ``previous``), and the
        promotion is appended to ``promotions.jsonl``. If copying fails, the staging dir is
        removed and nothing else changes.

        With ``version`` (the MLflow model version: one number names a model everywhere), a
        version already on disk, the one a rollback left or an earlier champion, is served again
        as it is (nothing is copied) when it holds the same model (its record's
        ``mlflow_version`` is ``metadata``'s). Without it, numbers are never reused, even after a
        rollback.

        Args:
            saved_model_dir: a SavedModel directory (with ``saved_model.pb``).
            metadata: JSON-serialisable facts about the model (run id, model URI, metrics ...);
                stored in the version's ``assets.extra/imgtag_promotion.json`` and in the log.
            version: the version number to serve it as; None: the next free number.
            wait: ``wait(version)`` returns once the model server has loaded ``version``
                (:func:`serving.predictors.wait_until_available`), raising
                :class:`RepositoryError` if it does not; None when no server reads this
                repository. The ``champion`` label moves only after it returns.

        Returns:
            The new champion.

        Raises:
            RepositoryError: ``saved_model_dir`` is not a SavedModel, ``version`` is on disk
                holding another model, or ``wait`` gave up: the new version is then served
                unlabelled, the champion is unchanged, and the promotion is not logged.
            TypeError: ``metadata`` is not JSON-serialisable.
        """
        source = Path(saved_model_dir)
        _check_saved_model(source)
        metadata = json.loads(json.dumps(metadata))  # a private copy; raises TypeError early
        if version is not None and int(version) < 1:
            raise RepositoryError(f"version must be a positive number, got {version}")
        with self._locked():
            history = self.history()
            labels = self.served().labels
            champion = labels.get(CHAMPION)
            previous = champion if champion is not None and _is_saved_model(self.path(champion)) else None
            at = _now()
            version = int(self._next_version(history) if version is None else version)
            if champion == version:  # already the champion: nothing to copy, switch or log
                return self._promotion(version, labels.get(PREVIOUS))
            path = self._place(source, version, metadata, at)
            self._switch(version, previous, wait)
            logged = {"action": "promote", "version": version, "previous": previous, "at": at}
            self._append_log({**logged, "metadata": metadata})
        log.info("promoted %s version %d (previous %s) at %s", self.name, version, previous, path)
        return Promotion(self.name, version, path, previous, metadata)

    def _place(self, source: Path, version: int, metadata: dict, at: str) -> Path:
        """The folder that serves ``version``: the one on disk when it holds the same model
        (:meth:`_check_same_model`), else a fresh copy of ``source`` with its promotion record."""
        if _is_saved_model(self.path(version)):
            self._check_same_model(version, metadata)
            return self.path(version)
        record = {"name": self.name, "version": version, "promoted_at": at, "metadata": metadata}
        return self._stage(source, version, record)

    def _check_same_model(self, version: int, metadata: dict) -> None:
        """Refuse to serve ``version`` again when its directory holds another model than ``metadata`` names."""
        on_disk = self.version_metadata(version).get("metadata", {})
        ours, theirs = metadata.get("mlflow_version"), on_disk.get("mlflow_version")
        if ours is not None and str(ours) != str(theirs):
            held = f"MLflow version {theirs}" if theirs else "a model MLflow never registered"
            raise RepositoryError(
                f"{self.path(version)} already holds {held}, not MLflow version {ours}: this repository "
                f"numbers its versions apart from MLflow (made by an older imgtag). Serve from a new "
                f"IMGTAG_MODEL_BASE, or move {self.model_dir} aside, then promote again"
            )

    def rollback(self, *, wait: Callable[[int], None] | None = None) -> Promotion:
        """Make the champion before the current one the champion again.

        The previous champion comes from ``promotions.jsonl``, so a second rollback walks
        further back through the promotions. The rolled-back version's directory stays (for
        forensics) but leaves ``models.config``, which then serves the restored champion and
        its own previous champion, if any. The rollback is logged with action ``rollback``.

        Args:
            wait: as for :meth:`promote`: the restored champion's own previous champion may
                not be served yet.

        Returns:
            The restored champion, with the metadata recorded when it was promoted.

        Raises:
            RepositoryError: there is nothing to roll back to, the version to restore is gone
                from disk, or ``models.config`` disagrees with the promotion log.
        """
        with self._locked():
            history = self.history()
            stack = self._champion_stack(history)
            champion = self.served().labels.get(CHAMPION)
            if len(stack) < 2:
                raise RepositoryError(
                    f"{self.name}: nothing to roll back to (champion {champion}, no earlier champion in "
                    f"{self.log_path})"
                )
            if champion != stack[-1]:
                raise RepositoryError(
                    f"{self.config_path} names champion {champion} for {self.name} but {self.log_path} "
                    f"says {stack[-1]}; fix models.config by hand before rolling back"
                )
            rolled_back = stack.pop()
            restored = stack[-1]
            previous = stack[-2] if len(stack) > 1 else None
            if not _is_saved_model(self.path(restored)):
                raise RepositoryError(
                    f"cannot restore {self.name} version {restored}: {self.path(restored)} is gone"
                )
            if previous is not None and not _is_saved_model(self.path(previous)):
                previous = None
            self._switch(restored, previous, wait)
            self._append_log(
                {
                    "action": "rollback",
                    "version": restored,
                    "previous": previous,
                    "rolled_back": rolled_back,
                    "at": _now(),
                    "metadata": {},
                }
            )
        log.info("rolled %s back from version %d to %d", self.name, rolled_back, restored)
        return self._promotion(restored, previous)
