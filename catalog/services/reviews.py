"""A person's decisions on tags: accept or reject a machine tag, add a tag (to one asset or many)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from catalog import counts
from catalog.models import Asset, AssetTag, Tag
from catalog.query import normalize_tag_name
from catalog.services._sql import chunks
from core.errors import UsageError

REVIEW_ACTIONS = ("accept", "reject", "add")


class TagNotOnAsset(UsageError, LookupError):
    """A review of a tag that the asset does not have."""


def review(asset: Asset, tag_name: str, action: str, user=None) -> AssetTag:
    """Record a person's decision about one tag on one asset.

    Args:
        asset: the asset.
        tag_name: the tag (any case; stored lowercase).
        action: ``accept`` or ``reject`` an existing tag, or ``add`` a tag (a human tag,
            score 1.0, accepted; adding a tag the asset already has accepts it).
        user: who decided (a Django user, or ``None``).

    Returns:
        The tag row after the decision.

    Raises:
        ValueError: an unknown action or an empty tag name.
        TagNotOnAsset: ``accept``/``reject`` of a tag the asset does not have.
    """
    if action not in REVIEW_ACTIONS:
        raise ValueError(f"unknown review action {action!r}; use one of {', '.join(REVIEW_ACTIONS)}")
    name = normalize_tag_name(tag_name)
    if not name:
        raise ValueError("the tag name is empty")
    reviewer = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        counts.fold_after_commit()
        rows = AssetTag.objects.select_for_update(of=("self",))
        row = rows.filter(asset=asset, tag__name=name).first()
        if row is None:
            if action != "add":
                raise TagNotOnAsset(f"asset {asset.pk} has no tag {name!r}; use the action 'add' to add it")
            tag, _ = Tag.objects.get_or_create(name=name)
            return AssetTag.objects.create(
                asset=asset,
                tag=tag,
                score=1.0,
                source=AssetTag.Source.HUMAN,
                review=AssetTag.Review.ACCEPTED,
                reviewed_by=reviewer,
            )
        row.review = AssetTag.Review.REJECTED if action == "reject" else AssetTag.Review.ACCEPTED
        row.reviewed_by = reviewer
        row.save(update_fields=["review", "reviewed_by", "updated_at"])
        return row


def add_tag_to_assets(asset_ids: Iterable[int], tag_name: str, user=None) -> int:
    """Add one tag to many assets (``review(asset, tag, "add")`` on each), in one transaction.

    Args:
        asset_ids: the assets' ids; ids of assets that do not exist are skipped.
        tag_name: the tag (any case; stored lowercase); an asset that has it already gets
            it accepted, as :func:`review` does.
        user: who decided.

    Returns:
        How many assets now carry the tag as a person's decision.

    Raises:
        ValueError: an empty tag name; nothing is changed.
    """
    if not normalize_tag_name(tag_name):
        raise ValueError("the tag name is empty")
    ids = sorted(set(asset_ids))
    with transaction.atomic():
        assets = [asset for chunk in chunks(ids) for asset in Asset.objects.filter(pk__in=chunk)]
        for asset in assets:
            review(asset, tag_name, "add", user)
    return len(assets)
