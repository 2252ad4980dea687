"""The API's request parsers: DRF's, with JSON bodies limited in depth.

The API's JSON bodies are flat objects. Python's parser raises ``RecursionError`` (a 500 in
DRF) on a body nested about a thousand levels deep, so :class:`JSONParser` answers any body
nested deeper than :data:`MAX_JSON_DEPTH` with a 400 instead. (A module of its own: DRF's
views import the parser classes its settings name.)
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser

#: Deepest JSON body accepted.
MAX_JSON_DEPTH = 32


def _depth(value) -> int:
    """How deeply ``value`` (parsed JSON) nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class JSONParser(DRFJSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than :data:`MAX_JSON_DEPTH` (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
            deep = True
        else:
            deep = _depth(data) > MAX_JSON_DEPTH
        if deep:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels; send a flat object"
            )
        return data
