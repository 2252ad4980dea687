"""Putting catalog assets (back) on the tagging queue, and the dead-letter queue tools.

- :func:`requeue_pending`: assets stored but never tagged, e.g. uploaded while the broker
  was down; their message is published now.
- :func:`requeue_stale`: assets whose machine tags came from another model version than the
  current one, in batches (the nightly DAG). Retagging rewrites only suggested machine tags:
  accepted, rejected and human tags stay as people left them (``record_tags``).
- :func:`dead_letters` and :func:`replay_dead`: look at and replay the dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from core import broker
from core.settings import Settings


def _pages(queryset, batch_size: int) -> Iterator[list]:
    """Pages of a queryset by increasing primary key (stable while rows change)."""
    last = 0
    while True:
        page = list(queryset.filter(pk__gt=last).order_by("pk")[:batch_size])
        if not page:
            return
        yield page
        last = page[-1].pk


def requeue_pending(settings: Settings, batch_size: int = 500) -> dict:
    """Publish a tagging message for every asset still ``pending``."""
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog.models import Asset

    published = 0
    with broker.Publisher(settings) as publisher:
        for page in _pages(Asset.objects.filter(status=Asset.Status.PENDING), batch_size):
            published += publisher.publish_many(broker.TaggingMessage.for_asset(a, "upload") for a in page)
    return {"published": published, "reason": "upload"}


def requeue_stale(model_name: str, model_version: str, settings: Settings, batch_size: int = 500) -> dict:
    """Publish a retag message for every asset with machine tags from another model version."""
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog.models import Asset, AssetTag

    stale_ids = (
        AssetTag.objects.filter(source=AssetTag.Source.MODEL, review=AssetTag.Review.SUGGESTED)
        .exclude(model_version__name=model_name, model_version__version=model_version)
        .values("asset_id")
    )
    published = batches = 0
    with broker.Publisher(settings) as publisher:
        for page in _pages(Asset.objects.filter(pk__in=stale_ids), batch_size):
            published += publisher.publish_many(broker.TaggingMessage.for_asset(a, "retag") for a in page)
            batches += 1
    return {
        "published": published,
        "batches": batches,
        "reason": "retag",
        "model": f"{model_name}:{model_version}",
    }


def dead_letters(settings: Settings, limit: int = 100) -> list[dict]:
    """Up to ``limit`` dead letters with their reasons; they stay in the queue."""
    connection = broker.connect(settings)
    try:
        channel = connection.channel()
        broker.declare(channel, settings)
        out = []
        for _ in range(limit):
            method, properties, body = channel.basic_get(settings.dead_queue, auto_ack=False)
            if method is None:
                break
            headers = properties.headers or {}
            reason = headers.get(broker.REASON_HEADER)
            error = headers.get(broker.ERROR_HEADER)
            if reason is None and headers.get("x-death"):  # dead-lettered by the broker itself
                reason = str(headers["x-death"][0].get("reason", "dead"))
                error = f"the broker dead-lettered it ({reason}) after repeated failed deliveries"
            out.append({"reason": reason, "error": error, "message": _body(body)})
        return out  # closing the channel without acks puts every message back
    finally:
        connection.close()


def replay_dead(settings: Settings, limit: int | None = None) -> dict:
    """Move dead letters back to the tagging queue (after the cause was fixed)."""
    replayed = 0
    with broker.Publisher(settings) as publisher:
        channel = publisher.channel
        while limit is None or replayed < limit:
            method, _, body = channel.basic_get(settings.dead_queue, auto_ack=False)
            if method is None:
                break
            publisher.publish_raw(body, settings.queue)  # confirmed before the dead letter goes
            channel.basic_ack(method.delivery_tag)
            replayed += 1
    return {"replayed": replayed}


def _body(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace")
