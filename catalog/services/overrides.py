"""The thresholds people set for a model's tags (:class:`catalog.models.TagThreshold`).

They replace the model's own from the next batch on, wherever the catalog tags images. What a
threshold would keep, and which one is in force, is :mod:`catalog.thresholds` (the thresholds page).
"""

from __future__ import annotations

from django.db import transaction

from catalog.models import Tag, TagThreshold
from catalog.query import normalize_tag_name


def with_catalog_thresholds(tagger):
    """``tagger`` with the thresholds people set for its model (:func:`threshold_overrides`)."""
    return tagger.with_thresholds(threshold_overrides(tagger.model_name, tagger.model_version))


def threshold_overrides(model_name: str, model_version: str) -> dict[str, float]:
    """The thresholds people set for a model's tags, ``{tag name: threshold}``, in one query.

    Whatever tags for the catalog (the queue worker's ``tag_batch``, :func:`tag_assets_in_process`,
    ``imgtag import``) applies them before each batch with ``tagger.with_thresholds``, so a
    change holds from the next batch on, in every worker, with no restart.
    """
    rows = TagThreshold.objects.filter(model_name=model_name, model_version=model_version)
    return dict(rows.values_list("tag__name", "threshold"))


def set_threshold(
    tag_name: str, model_name: str, model_version: str, threshold: float, user=None
) -> TagThreshold:
    """Set the threshold of a tag for one model (replacing the one set before, if any).

    Args:
        tag_name: the tag (any case; stored lowercase); created when the catalog has no such tag yet.
        model_name, model_version: the model whose scores the threshold was tuned on.
        threshold: above 0 and at most 1.
        user: who set it (a Django user, or ``None``).

    Raises:
        ValueError: an empty tag name or a threshold outside (0, 1]; nothing is written.
    """
    name = normalize_tag_name(tag_name)
    if not name:
        raise ValueError("the tag name is empty")
    value = float(threshold)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"a threshold is above 0 and at most 1; {value:g} is not")
    if not (model_name and model_version):
        raise ValueError("name the model (name and version) the threshold is for")
    setter = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        tag, _ = Tag.objects.get_or_create(name=name)
        row, _ = TagThreshold.objects.update_or_create(
            tag=tag,
            model_name=model_name,
            model_version=model_version,
            defaults={"threshold": value, "updated_by": setter},
        )
    return row


def reset_threshold(tag_name: str, model_name: str, model_version: str) -> bool:
    """Remove the threshold people set for a tag and model: the model's own applies again.

    Returns:
        True when there was one to remove.
    """
    rows = TagThreshold.objects.filter(
        tag__name=normalize_tag_name(tag_name), model_name=model_name, model_version=model_version
    )
    deleted, _ = rows.delete()
    return bool(deleted)
