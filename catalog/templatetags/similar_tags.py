"""``{% similar_strip asset %}``: the asset page's "More like this" strip (:mod:`catalog.similar`).

A template tag rather than view code, so that the strip is one line in ``asset.html``: the
assets most like this one (top 24, best first), each a thumbnail linking to its page with its
score; nothing when the asset has no embedding yet or no other asset has one; a note saying
so while the index is first built (at a million assets, minutes), rather than a page that waits.
"""

from __future__ import annotations

from django import template

from catalog import similar

register = template.Library()


@register.inclusion_tag("catalog/similar_strip.html")
def similar_strip(asset):
    """The context of the strip: the similar assets with their scores, or how far the index is."""
    try:
        return {"asset": asset, "found": similar.similar_to_asset(asset, wait=False)}
    except similar.IndexNotReady as building:
        return {"asset": asset, "found": [], "building": building}
