"""Who tags new uploads: the queue's workers (publish a message per asset) or this process.

``IMGTAG_UPLOAD_TAGGING`` (``upload_tagging`` of :func:`catalog.conf.imgtag_settings`) chooses
(:func:`tag_uploads`). In process, the catalog's thresholds
apply (:func:`catalog.services.overrides.with_catalog_thresholds`) and the results are written
with :func:`catalog.services.tagging.record_results`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pika.exceptions import AMQPError

from catalog.conf import imgtag_settings
from catalog.models import Asset
from catalog.services.overrides import with_catalog_thresholds
from catalog.services.tagging import mark_failed, record_results
from catalog.storage import get_storage
from core import broker
from core.results import TagResult
from serving import current

logger = logging.getLogger(__name__)


def tag_assets_in_process(assets: Iterable[Asset], tagger=None) -> list[TagResult]:
    """Tag stored assets with the in-process model and record their tags or failures.

    Args:
        assets: assets whose originals are stored (typically the ``pending`` ones just uploaded).
        tagger: a :class:`core.tagger.Tagger`; default the process-wide one from
            :func:`serving.current.get_tagger` (the model loads on first use, in about 3 s).
            The thresholds people set for its model (:func:`threshold_overrides`) apply.

    Returns:
        One result per asset whose original could be read, in order (``result.key`` is the
        asset); an asset whose original is missing from storage is marked failed.
    """
    storage = get_storage()
    items = []
    for asset in assets:
        try:
            items.append((asset, storage.read(asset.uri), asset.filename))
        except FileNotFoundError:
            mark_failed(
                asset,
                f"{asset.filename}: the original is missing from storage at {asset.uri}; upload it again",
            )
    if not items:
        return []
    if tagger is None:
        tagger = current.get_tagger(imgtag_settings())
    tagger = with_catalog_thresholds(tagger)
    results = list(tagger.tag_images(items))
    record_results(results, tagger)
    return results


def publish_for_tagging(assets: Iterable[Asset]) -> bool:
    """Publish a tagging message per asset (persistent, confirmed).

    Returns:
        True when published; False when RabbitMQ is unreachable — the assets then stay
        ``pending`` and ``imgtag requeue --pending`` publishes them later.
    """
    assets = list(assets)
    if not assets:
        return True
    try:
        with broker.Publisher(imgtag_settings()) as publisher:
            publisher.publish_many(broker.TaggingMessage.for_asset(asset) for asset in assets)
    except (broker.BrokerUnavailable, broker.QueueMismatch, AMQPError) as exc:  # unreachable, refused,
        # lost mid-publish, or a queue declared with other settings (the log says which)
        logger.warning(
            "%s; %d upload(s) stay pending until `imgtag requeue --pending`", exc or repr(exc), len(assets)
        )
        return False
    return True


def tag_uploads(assets: Iterable[Asset]) -> None:
    """Tag new uploads the way ``IMGTAG_UPLOAD_TAGGING`` says: through the queue or in process."""
    if imgtag_settings().upload_tagging == "inprocess":
        tag_assets_in_process(assets)
    else:
        publish_for_tagging(assets)
