"""The ``promote`` and ``rollback`` stages: what TF Serving serves, and the MLflow alias with it.

- ``promote`` copies a registered model version into the TF Serving repository as the next
  numbered version (atomically, :mod:`serving.repository`), waits for TF Serving to load it,
  then moves the ``champion`` alias to it;
- ``rollback`` serves the previous champion again and moves the alias back (or removes it when
  the previous champion is a model MLflow never registered, such as the starter model).

Only these two move the champion (:mod:`pipelines.training.champion`).
"""

from __future__ import annotations

from core.settings import Settings
from pipelines.training import tracking
from pipelines.training.champion import champion_version, downloaded, repository_of
from serving.predictors import load_waiter


def _load_waiter(settings: Settings):
    """Waits for TF Serving to load a version before its label moves (``IMGTAG_SERVING_STATUS_URL``)."""
    return load_waiter(settings.serving, settings.model_name)


def promote(model_version: str, *, settings: Settings) -> dict:
    """Serve a registered model version: the next numbered version in the model repository,
    then the ``champion`` alias. Promoting the version that is already champion changes nothing.
    """
    client = tracking.client(settings)
    version = client.get_model_version(settings.model_name, str(model_version))
    repository = repository_of(settings)
    current = repository.current()
    if current is not None and str(current.metadata.get("mlflow_version")) == str(version.version):
        promotion, changed = current, False  # a retried promote after the copy: only the alias may be missing
    else:
        metadata = {
            "mlflow_model": settings.model_name,
            "mlflow_version": str(version.version),
            "run_id": version.run_id,
            "dataset_hash": (version.tags or {}).get("dataset_hash", ""),
            "source": version.source,
        }
        with downloaded(version) as saved_model:
            promotion = repository.promote(saved_model, metadata, wait=_load_waiter(settings))
            changed = True
    client.set_registered_model_alias(settings.model_name, tracking.CHAMPION, str(version.version))
    client.set_model_version_tag(
        settings.model_name, str(version.version), "serving_version", str(promotion.version)
    )
    return {
        "model_name": settings.model_name,
        "model_version": str(version.version),
        "serving_version": promotion.version,
        "previous_serving_version": promotion.previous,
        "path": str(promotion.path),
        "changed": changed,
    }


def rollback(*, settings: Settings) -> dict:
    """Serve the previous champion again and point the ``champion`` alias back at it."""
    repository = repository_of(settings)
    before = repository.current()
    promotion = repository.rollback(wait=_load_waiter(settings))
    mlflow_version = promotion.metadata.get("mlflow_version")
    client = tracking.client(settings)
    if mlflow_version:
        client.set_registered_model_alias(settings.model_name, tracking.CHAMPION, str(mlflow_version))
    elif champion_version(client, settings.model_name) is not None:
        # back to a version MLflow never registered (the installed starter model): no alias
        client.delete_registered_model_alias(settings.model_name, tracking.CHAMPION)
    return {
        "model_name": settings.model_name,
        "serving_version": promotion.version,
        "rolled_back_from": before.version if before else None,
        "model_version": mlflow_version,
        "path": str(promotion.path),
    }
