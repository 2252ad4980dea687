"""What the catalog does, as plain functions: ingest, tag, set thresholds, review, search.

The CLI, the REST API, the web views and the queue worker all call these (``from catalog import
services; services.ingest(...)``); nothing here knows about HTTP. Each function is safe to call
inside the caller's transaction (the bulk importer commits one transaction per chunk) and opens
its own when there is none.

The package, one module per concern (all names are re-exported here):

==================  =================================================================================
``assets``          ingest: validate and store an original, create its asset row once per content
                    (:func:`ingest`; :func:`prepare` and :func:`register` for the bulk importer)
``tagging``         machine tags: :func:`record_tags`, :func:`record_tags_batch`, :func:`record_results`,
                    :func:`mark_failed`
``dispatch``        who tags new uploads: the queue (:func:`publish_for_tagging`) or this process
                    (:func:`tag_assets_in_process`), as ``IMGTAG_UPLOAD_TAGGING`` says (:func:`tag_uploads`)
``overrides``       the thresholds people set for a model's tags (:func:`set_threshold`,
                    :func:`threshold_overrides`, :func:`with_catalog_thresholds`); what a threshold
                    would keep is :mod:`catalog.thresholds`
``reviews``         a person's decisions: :func:`review`, :func:`add_tag_to_assets`
``embeddings``      image embeddings per asset and model version (:func:`record_embeddings`, the backfill)
``browse``          reading: :func:`search`, :func:`with_tags`, :func:`tag_rows`, :func:`asset_summary`
``_sql``            ``IN (...)`` lists in chunks any database accepts
==================  =================================================================================

Imports point one way: ``dispatch`` uses ``tagging`` and ``overrides``; the others use only
the models, :mod:`catalog.query`, :mod:`catalog.storage` and ``_sql``.

Tag provenance rules (the contract every caller relies on):

- machine tags are written by :func:`record_tags` as ``source=model, review=suggested``;
- a tag row that a person touched (``source=human``, or review ``accepted``/``rejected``) is
  never changed or removed by :func:`record_tags`;
- writing the same tags twice changes nothing (not even a timestamp), so a message that is
  delivered twice is harmless.
"""

from __future__ import annotations

from catalog.services.assets import (
    Prepared,
    UploadTooLarge,
    clean_filename,
    existing_sha256,
    ingest,
    prepare,
    register,
    validate,
)
from catalog.services.browse import asset_summary, search, tag_rows, with_tags
from catalog.services.dispatch import publish_for_tagging, tag_assets_in_process, tag_uploads
from catalog.services.overrides import (
    reset_threshold,
    set_threshold,
    threshold_overrides,
    with_catalog_thresholds,
)
from catalog.services.reviews import REVIEW_ACTIONS, TagNotOnAsset, add_tag_to_assets, review
from catalog.services.tagging import (
    Parents,
    TagChanges,
    mark_failed,
    record_results,
    record_tags,
    record_tags_batch,
)

__all__ = [
    "REVIEW_ACTIONS",
    "Parents",
    "Prepared",
    "TagChanges",
    "TagNotOnAsset",
    "UploadTooLarge",
    "add_tag_to_assets",
    "asset_summary",
    "clean_filename",
    "existing_sha256",
    "ingest",
    "mark_failed",
    "prepare",
    "publish_for_tagging",
    "record_results",
    "record_tags",
    "record_tags_batch",
    "register",
    "reset_threshold",
    "review",
    "search",
    "set_threshold",
    "tag_assets_in_process",
    "tag_rows",
    "tag_uploads",
    "threshold_overrides",
    "validate",
    "with_catalog_thresholds",
    "with_tags",
]
