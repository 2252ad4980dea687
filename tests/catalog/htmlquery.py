"""Just enough HTML querying for the page tests (the standard library's parser, no dependency).

``parse(html).find_all("tr", testid="tag-row", tag="cat")`` finds elements by name, by
``data-testid`` and by other attributes (``data-`` ones also by their short name); ``.text`` is
an element's text with runs of white space collapsed, as a browser shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    name: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        parts = []

        def walk(node):
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                elif child.name not in ("script", "style", "template"):
                    walk(child)

        walk(self)
        return " ".join("".join(parts).split())

    def get(self, attr: str, default=None):
        return self.attrs.get(attr, default)

    def iter(self):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, element: str | None = None, /, *, testid: str | None = None, **attrs) -> list[Element]:
        wanted = dict(attrs)
        if testid is not None:
            wanted["data-testid"] = testid
        found = []
        for node in self.iter():
            if element and node.name != element:
                continue
            if all(
                node.attrs.get(key) == value or node.attrs.get(f"data-{key}") == value
                for key, value in wanted.items()
            ):
                found.append(node)
        return found

    def find(self, element: str | None = None, /, **kwargs) -> Element:
        found = self.find_all(element, **kwargs)
        assert len(found) == 1, f"expected one {element or ''} {kwargs}, found {len(found)}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].name == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str | bytes) -> Element:
    builder = _Builder()
    builder.feed(html.decode() if isinstance(html, bytes) else html)
    builder.close()
    return builder.root
