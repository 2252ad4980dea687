"""Which model is the champion: what the model repository serves, and where MLflow's alias points.

One champion: what the model repository serves (the ``champion`` label of ``models.config``)
*is* the champion; the MLflow alias ``champion`` only mirrors it, and only ``promote`` and
``rollback`` (:mod:`pipelines.training.promotion`) move either. :func:`champion_status` tells
whether they agree (the decision is the pure :func:`champion_agreement`); an alias moved by hand
(the MLflow UI offers it) makes the gate fail with :class:`ChampionDivergence` rather than
compare with a model that is not served. ``imgtag models`` shows both and the history.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ExitCode, ImgtagError
from core.settings import Settings
from pipelines.training import tracking
from serving.repository import ModelRepository

#: MLflow error codes that mean "no such registered model" or "no such alias" (not "cannot tell").
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def champion_version(client, name: str):
    """The model version the ``champion`` alias points at, or None when the alias or the
    registered model does not exist. Other MLflow errors (an unreachable server) are raised:
    "no alias" must never be a guess."""
    import mlflow

    try:
        return client.get_model_version_by_alias(name, tracking.CHAMPION)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


class ChampionDivergence(ImgtagError, RuntimeError):
    """The MLflow alias ``champion`` does not name what TF Serving serves (it was moved by hand).

    The message says what is served, where the alias points and how to put it back.

    Attributes:
        status: the :class:`ChampionStatus` that disagrees.
    """

    exit_code = ExitCode.CHAMPION_DIVERGED

    def __init__(self, status: ChampionStatus):
        super().__init__(f"champion divergence: {status.reason}")
        self.status = status


@dataclass(frozen=True)
class ChampionStatus:
    """Which model is the champion: what the model repository serves, and where the MLflow alias points.

    Attributes:
        model_name: the model's name in the repository and in the MLflow registry.
        serving_version: the version labelled ``champion`` in ``models.config``; None when
            nothing is served yet.
        mlflow_version: the MLflow model version it was promoted from (the same number as
            ``serving_version`` since one number names a model); None for a version copied in
            by hand, a starter installed by an older imgtag, or nothing served.
        served: what is served, in words (see :func:`describe_served`).
        alias_version: the MLflow model version the ``champion`` alias points at; None when
            there is no alias (or no registered model).
        agree: whether the alias names what is served (:func:`champion_agreement`).
        reason: one line: why they agree, or what differs and what to do about it.
        path: the served version's local directory (the SavedModel the gate scores).
        previous: the version labelled ``previous`` beside it (what a rollback would serve).
        metadata: the served version's promotion record: run id, dataset hash, source ...
        promoted_at: when the served version was promoted (ISO 8601), if recorded.
    """

    model_name: str
    serving_version: int | None
    mlflow_version: str | None
    served: str
    alias_version: str | None
    agree: bool
    reason: str
    path: Path | None = None
    previous: int | None = None
    metadata: dict = field(default_factory=dict)
    promoted_at: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (``path`` as a string)."""
        return {
            "model_name": self.model_name,
            "serving_version": self.serving_version,
            "previous_serving_version": self.previous,
            "mlflow_version": self.mlflow_version,
            "served": self.served,
            "run_id": self.metadata.get("run_id"),
            "dataset_hash": self.metadata.get("dataset_hash"),
            "promoted_at": self.promoted_at,
            "path": str(self.path) if self.path else None,
            "alias_version": self.alias_version,
            "agree": self.agree,
            "reason": self.reason,
        }


def describe_served(serving_version: int | None, metadata: dict, *, starter: bool = True) -> str:
    """What the model repository serves, in words (a pure function of its promotion record).

    One number names a model everywhere: ``"version 3"``, ``"version 1 (the starter model)"``;
    a repository an older imgtag numbered apart from MLflow gives ``"MLflow version 3 (serving
    version 4)"``; ``"serving version 2, which MLflow never registered"`` (copied in by hand, or
    a starter installed by an older imgtag); with nothing served ``"nothing promoted: the
    shipped starter model tags in process"``.
    """
    if serving_version is None:
        if starter:
            return "nothing promoted: the shipped starter model tags in process"
        return "nothing promoted: the general ImageNet tags only (IMGTAG_STARTER=off)"
    registered = metadata.get("mlflow_version")
    if registered and str(registered) == str(serving_version):
        return f"version {serving_version}" + (" (the starter model)" if metadata.get("starter") else "")
    if registered:
        return f"MLflow version {registered} (serving version {serving_version})"
    if metadata.get("starter"):
        return f"the starter model (serving version {serving_version}), which MLflow never registered"
    return f"serving version {serving_version}, which MLflow never registered (copied in by hand)"


def champion_agreement(
    serving_version: int | None, mlflow_version: str | None, alias_version: str | None, *, served: str
) -> tuple[bool, str]:
    """Whether the MLflow alias ``champion`` agrees with what is served, and a one-line reason
    (a pure function: no MLflow, no files).

    They agree when the alias points at the served MLflow version, or when nothing MLflow
    registered is served (nothing at all, the starter model, a hand-copied version) and there is
    no alias. Otherwise the reason says what is served, where the alias points, and how to put
    the alias back: only ``promote`` and ``rollback`` move it.

    Args:
        serving_version: the served version (the ``champion`` label), None when nothing is.
        mlflow_version: the MLflow version it was promoted from, None when MLflow never had it.
        alias_version: where the alias points, None when there is no alias.
        served: what is served, in words (:func:`describe_served`).
    """
    alias = None if alias_version is None else str(alias_version)
    registered = None if mlflow_version is None else str(mlflow_version)
    rule = "the alias is only moved by `imgtag promote` and `imgtag rollback`, never by hand"
    serves = f"TF Serving serves {served}"
    if serving_version is None:
        serves = f"TF Serving serves nothing ({served})"
    if registered is not None and alias == registered:
        return True, f"{serves}, where the MLflow alias `champion` points"
    if registered is None and alias is None:
        return True, f"{serves}; no MLflow version has the alias `champion`, as none is served"
    if registered is None:
        return False, (
            f"the MLflow alias `champion` points at version {alias} but {serves}, which MLflow never "
            f"registered: undo the hand edit by deleting the alias (MLflow UI: the registered model's "
            f"Aliases), then promote a version through the gate; {rule}"
        )
    if alias is None:
        return False, (
            f"{serves} but no MLflow version has the alias `champion` (removed by hand): "
            f"put it back with `imgtag promote {registered}` (re-runs the promotion of the served version: "
            f"nothing is copied, only the alias is set); {rule}"
        )
    return False, (
        f"the MLflow alias `champion` points at version {alias} but {serves}: "
        f"the gate would compare challengers with a model that is not served. Move the alias back "
        f"with `imgtag promote {registered}` (re-runs the promotion of the served version: nothing "
        f"is copied, only the alias moves), or serve the champion before it with `imgtag rollback`; {rule}"
    )


def _alias_version(settings: Settings, client=None) -> str | None:
    """Where the ``champion`` alias points, or None. A local MLflow database that does not exist
    yet holds no alias: it is not created just to look (``imgtag models`` on a fresh install)."""
    uri = settings.mlflow_tracking_uri
    if client is None and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    found = champion_version(client or tracking.client(settings), settings.model_name)
    return None if found is None else str(found.version)


def champion_status(settings: Settings, *, client=None) -> ChampionStatus:
    """What TF Serving serves, where the MLflow alias ``champion`` points, and whether they agree.

    Args:
        settings: where the model repository and MLflow are.
        client: an MLflow client to reuse (else one is made, unless the local MLflow database
            does not exist yet).

    Raises:
        serving.repository.RepositoryError: ``models.config`` cannot be read.
        mlflow.exceptions.MlflowException: MLflow cannot be asked (not "no alias": that is None).
    """
    repository = repository_of(settings)
    current = repository.current()
    serving_version = current.version if current else None
    metadata = dict(current.metadata) if current else {}
    mlflow_version = str(metadata["mlflow_version"]) if metadata.get("mlflow_version") else None
    served = describe_served(serving_version, metadata, starter=settings.starter)
    alias = _alias_version(settings, client)
    agree, reason = champion_agreement(serving_version, mlflow_version, alias, served=served)
    return ChampionStatus(
        model_name=settings.model_name,
        serving_version=serving_version,
        mlflow_version=mlflow_version,
        served=served,
        alias_version=alias,
        agree=agree,
        reason=reason,
        path=current.path if current else None,
        previous=current.previous if current else None,
        metadata=metadata,
        promoted_at=(repository.version_metadata(current.version).get("promoted_at") if current else None),
    )


def champion_history(settings: Settings, *, last: int | None = None) -> list[dict]:
    """The model repository's promotions and rollbacks, newest first (the last ``last`` of them).

    Each is a ``promotions.jsonl`` entry (``action``, ``version``, ``previous``, ``at``, a
    rollback's ``rolled_back``) plus ``mlflow_version``: the MLflow version the served version
    was promoted from, None for the starter model (a rollback's own entry does not record it).
    """
    entries = [e for e in repository_of(settings).history() if "version" in e]
    registered = {
        int(e["version"]): (e.get("metadata") or {}).get("mlflow_version")
        for e in entries
        if e.get("action") == "promote"
    }
    newest_first = [{**e, "mlflow_version": registered.get(int(e["version"]))} for e in reversed(entries)]
    return newest_first if last is None else newest_first[:last]


def model_versions(settings: Settings, *, last: int = 5, client=None) -> list[dict]:
    """The last ``last`` registered versions, newest first, with their aliases and the gate's verdicts.

    Aliases come from ``get_model_version``, one version at a time: MLflow's
    ``search_model_versions`` returns none. Each row: ``version``, ``aliases``, ``starter`` (the
    starter's version for the starter model), ``gate`` (``passed``, ``rejected`` or None: never
    gated), ``gate_reason``, ``gate_metric``, ``gate_challenger``, ``gate_champion``,
    ``gate_champion_version``, ``gate_margin``, ``gate_at``, ``dag_run_id``.
    """
    if last <= 0:
        return []
    uri = settings.mlflow_tracking_uri
    if client is None and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    client = client or tracking.client(settings)
    found = client.search_model_versions(f"name='{settings.model_name}'")
    newest = sorted({int(v.version) for v in found}, reverse=True)[:last]
    rows = []
    for number in newest:
        version = client.get_model_version(settings.model_name, str(number))
        tags = version.tags or {}
        rows.append(
            {
                "version": number,
                "aliases": sorted(version.aliases or []),
                "starter": tags.get("starter"),
                "dag_run_id": tags.get("dag_run_id") or None,
                **{
                    key: tags.get(key) or None
                    for key in (
                        "gate",
                        "gate_reason",
                        "gate_metric",
                        "gate_challenger",
                        "gate_champion",
                        "gate_champion_version",
                        "gate_margin",
                        "gate_at",
                    )
                },
            }
        )
    return rows


def repository_of(settings: Settings):
    return ModelRepository(
        settings.model_base, settings.model_name, serving_base_path=settings.serving_base_path
    )


@contextlib.contextmanager
def downloaded(version) -> Iterator[Path]:
    """A model version's SavedModel in a local temporary folder, removed afterwards."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix=f"imgtag-model-v{version.version}-") as target:
        yield Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=target))
