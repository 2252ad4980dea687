"""The API's JSON renderer: DRF's, writing with `orjson <https://github.com/ijl/orjson>`_.

A search page of 50 assets with their tags is about 80 KB of JSON: timed inside a search request
at a million assets, DRF's renderer (the standard library's ``json`` with DRF's encoder) took
0.9-1.1 ms of CPU for it and this one 0.2 ms, a tenth of the request's CPU (bench_scale). The
bytes are DRF's: compact, UTF-8, ``\\u2028``/``\\u2029`` escaped, and every value orjson does not
write itself as DRF's does (times and dates, decimals, lazy strings) goes through DRF's encoder.
Pretty-printed answers (``Accept: application/json; indent=4``) are DRF's own. One difference: a
float that is not a number is written ``null`` where DRF would fail the request. (A module of
its own: DRF's views import the renderer classes its settings name.)
"""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer

# orjson writes times as ISO 8601 with "+00:00"; DRF writes "Z" (and its own precision): its encoder does them
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class JSONRenderer(DRFJSONRenderer):
    """DRF's ``JSONRenderer`` with orjson (see the module docstring)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None or not self.compact or self.ensure_ascii:
            return super().render(data, accepted_media_type, renderer_context)
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            out = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except orjson.JSONEncodeError:  # an integer over 64 bits, a key that is not a string
            return super().render(data, accepted_media_type, renderer_context)
        return out.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
