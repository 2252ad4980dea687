"""The ``promote`` and ``rollback`` stages: what TF Serving serves, and the MLflow alias with it.

- ``promote`` copies a registered model version into the TF Serving repository under its own
  number (MLflow version 4 is serving version 4: one number names a model everywhere;
  atomically, :mod:`serving.repository`), waits for TF Serving to load it, then moves the
  ``champion`` alias to it. A version served before (the starter, version 1 of a new install,
  or a rolled-back champion) is served again as it is on disk;
- ``rollback`` serves the previous champion again and moves the alias back (or removes it when
  the previous champion is a model MLflow never registered: a starter installed by an older
  imgtag).

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
    """Serve a registered model version under its own number in the model repository, then move
    the ``champion`` alias to it. Promoting the version that is already champion changes nothing
    but the alias; a version served before (the starter, a rolled-back champion) is served again
    from its directory, without copying.
    """
    client = tracking.client(settings)
    version = client.get_model_version(settings.model_name, str(model_version))
    number = int(version.version)
    repository = repository_of(settings)
    current = repository.current()
    if current is not None and current.version == number:
        promotion, changed = current, False  # a retried promote after the copy: only the alias may be missing
    else:
        tags = version.tags or {}
        metadata = {
            "mlflow_model": settings.model_name,
            "mlflow_version": str(version.version),
            "run_id": version.run_id,
            "dataset_hash": tags.get("dataset_hash", ""),
            "source": version.source,
            **({"starter": tags["starter"]} if tags.get("starter") else {}),
        }
        if number in repository.versions():  # served before: serve that directory again
            promotion = repository.promote(
                repository.path(number), metadata, version=number, wait=_load_waiter(settings)
            )
        else:
            with downloaded(version) as saved_model:
                promotion = repository.promote(
                    saved_model, metadata, version=number, wait=_load_waiter(settings)
                )
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
