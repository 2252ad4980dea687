"""Search by tag: a small query language compiled to Django ``Q`` objects on :class:`Asset`.

Grammar (keywords are case-insensitive; NOT binds tightest, then AND, then OR)::

    query    := or_expr END
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary (["AND"] unary)*        -- adjacent terms are ANDed
    unary    := ("NOT" | "-") unary | atom
    atom     := TAG | '"' any text '"' | "(" or_expr ")"

A bare tag is a run of characters other than spaces, parentheses and ``"``; a ``-`` starts a
negation only at the start of a term (``t-shirt`` is one tag). Quote tag names that contain
spaces or are a keyword: ``"coffee mug" AND NOT dog``, ``cat -"tiger cat"``, ``"or"``. Tag
names are compared lowercase with runs of spaces collapsed.

The query's tag names are looked up first (one query), then each tag term becomes one
``EXISTS (SELECT 1 FROM assettag WHERE asset_id = asset.id AND tag_id = ...)`` subquery (tags
ORed at one level share one, ``tag_id IN (...)``), so the same SQL runs on SQLite and
PostgreSQL. Naming the tag by id, not through a join on its name, lets PostgreSQL's planner see
how many assets the tag has, and EXISTS lets it choose per query: read a rare tag's few assets
from the ``(tag, asset)`` index, or walk the newest assets and look each one up in the
``(asset, tag)`` index until a page is full (NOT, OR and common tags). A tag name the catalog
does not have matches nothing, without a subquery. A term matches an asset
that has the tag with ``score >= min_score`` (and the requested source and review state); a
rejected tag never matches.

Limits keep every query cheap and every answer a 400 with the reason, never a 500
(:class:`QueryLimitError`): at most :data:`MAX_LENGTH` (1,000) characters, :data:`MAX_TERMS`
(20) tag terms, and :data:`MAX_DEPTH` (20) levels of nesting, where each ``(`` and each ``NOT``
or ``-`` is a level (in ``NOT (cat OR -dog)``, ``dog`` is 3 deep). The length is checked first,
the terms on the tokens before parsing, and the depth while parsing, so the recursion never
goes deeper than the limit. The term limit comes from PostgreSQL: ANDed terms become
semi-joins, and planning them grows steeply (measured on PostgreSQL 15, one query: 20 terms
20 ms, 50 terms 170 ms, 100 terms 2 s, 500 terms over 15 minutes; the gallery runs about six);
SQLite refuses about 1,000 terms ("Expression tree is too large"). A NUL character is refused
as a syntax error (PostgreSQL text cannot hold it).

The parser is written by hand (recursive descent, one function per grammar rule): the grammar
has five kinds of token, so a parser library would be a dependency larger than the parser, and
a hand-written one reports errors in our own words, with the position and what was expected.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from catalog.models import AssetTag, Tag
from core.errors import UsageError

KEYWORDS = ("AND", "OR", "NOT")
MAX_LENGTH = 1_000  # characters of query text
MAX_TERMS = 20  # tag terms (each is a subquery)
MAX_DEPTH = 20  # nesting: each "(" and each NOT or "-" around a term
SOURCES = tuple(AssetTag.Source.values)
REVIEW_FILTERS = (AssetTag.Review.SUGGESTED.value, AssetTag.Review.ACCEPTED.value)


class QueryError(UsageError, ValueError):
    """A search that cannot run: a bad option such as ``min_score=2``."""


class QuerySyntaxError(QueryError):
    """The query text does not follow the grammar.

    Attributes:
        query: the text as given.
        position: 0-based offset of the offending token.
        expected: what the parser wanted there.
        found: what it found.
    """

    def __init__(self, query: str, position: int, expected: str, found: str, hint: str = ""):
        self.query, self.position, self.expected, self.found = query, position, expected, found
        where = f"invalid query {query!r} at character {position + 1}"
        message = f"{where}: expected {expected}, found {found}"
        super().__init__(f"{message}; {hint}" if hint else message)


class QueryLimitError(QueryError):
    """The query is longer, has more terms or nests deeper than the language allows.

    Attributes:
        limits: the limits it is over: ``"length"`` (:data:`MAX_LENGTH`), ``"terms"``
            (:data:`MAX_TERMS`), ``"depth"`` (:data:`MAX_DEPTH`).
        position: 0-based offset where it went over (the first term too many, the ``(`` or NOT
            one level too deep; 0 for the length).
    """

    def __init__(self, limits: tuple[str, ...], position: int, message: str):
        self.limits, self.position = limits, position
        super().__init__(message)


@dataclass(frozen=True)
class Term:
    """Assets that have the tag ``name``."""

    name: str


@dataclass(frozen=True)
class Not:
    """Assets that do not match ``operand``."""

    operand: Node


@dataclass(frozen=True)
class And:
    """Assets that match every operand."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Assets that match any operand."""

    operands: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True)
class _Token:
    kind: str  # "TAG", "AND", "OR", "NOT", "(", ")" or "END"
    value: str
    position: int


def normalize_tag_name(name: str) -> str:
    """The stored form of a tag name: lowercase, single spaces, no surrounding space."""
    return " ".join(name.split()).lower()


def _checked_tokens(text: str) -> list[_Token]:
    """The tokens of ``text`` once its length and term count are within the limits.

    Raises:
        QueryLimitError: over the length or the term limit (the message names each one over).
        QuerySyntaxError: the text does not tokenize (a lone quote, a NUL character).
    """
    length = f"the query is {len(text):,} characters long; the length limit is {MAX_LENGTH:,} characters"
    if len(text) > 10 * MAX_LENGTH:  # not worth tokenizing to count its terms
        raise QueryLimitError(("length",), 0, length)
    try:
        tokens = _tokenize(text)
    except QuerySyntaxError:
        if len(text) > MAX_LENGTH:
            raise QueryLimitError(("length",), 0, length) from None
        raise
    tags = [token for token in tokens if token.kind == "TAG"]
    over = []  # (limit, what the query has, the limit)
    if len(text) > MAX_LENGTH:
        over.append(
            ("length", f"is {len(text):,} characters long", f"the length limit is {MAX_LENGTH:,} characters")
        )
    if len(tags) > MAX_TERMS:
        over.append(("terms", f"has {len(tags):,} tag terms", f"the term limit is {MAX_TERMS} terms"))
    if over:
        limits, has, allowed = zip(*over, strict=True)
        message = f"the query {' and '.join(has)}; {' and '.join(allowed)}"
        if "terms" in limits:
            message += " (search for a broader tag, or split the search)"
        position = tags[MAX_TERMS].position if limits == ("terms",) else 0
        raise QueryLimitError(limits, position, message)
    return tokens


def _tokenize(text: str) -> list[_Token]:
    nul = text.find("\0")
    if nul >= 0:
        raise QuerySyntaxError(text, nul, "text without NUL characters", "a NUL character")
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, i))
            i += 1
        elif char == "-":
            tokens.append(_Token("NOT", char, i))
            i += 1
        elif char == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError(
                    text, i, 'a closing " for the quote opened here', "the end of the query"
                )
            name = normalize_tag_name(text[i + 1 : end])
            if not name:
                raise QuerySyntaxError(text, i, "a tag name between the quotes", "empty quotes")
            tokens.append(_Token("TAG", name, i))
            i = end + 1
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] not in '()"':
                end += 1
            word = text[i:end]
            keyword = word.upper()
            if keyword in KEYWORDS:
                tokens.append(_Token(keyword, word, i))
            else:
                tokens.append(_Token("TAG", word.lower(), i))
            i = end
    tokens.append(_Token("END", "", n))
    return tokens


def _describe(token: _Token) -> str:
    if token.kind == "END":
        return "the end of the query"
    if token.kind == "TAG":
        return f"tag {token.value!r}"
    return repr(token.value)


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    TERM_START = "a tag, NOT, '-' or '('"

    def __init__(self, text: str):
        self.text = text
        self.tokens = _checked_tokens(text)
        self.index = 0
        self.depth = 0  # "(" and NOT around the current token; at most MAX_DEPTH

    def nest(self, token: _Token) -> None:
        """One level deeper (``token``: the ``(`` or NOT that opens it), within MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryLimitError(
                ("depth",),
                token.position,
                f"the query nests deeper than the depth limit of {MAX_DEPTH} at character "
                f"{token.position + 1} (each '(' and each NOT or '-' is a level)",
            )

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.current
        self.index += 1
        return token

    def error(self, expected: str) -> QuerySyntaxError:
        token = self.current
        hint = ""
        if token.kind in KEYWORDS:
            name = token.value.lower()
            hint = f'to search for a tag named {name!r}, quote it: "{name}"'
        return QuerySyntaxError(self.text, token.position, expected, _describe(token), hint)

    def parse(self) -> Node:
        if self.current.kind == "END":
            raise QuerySyntaxError(self.text, 0, "at least one tag", "an empty query")
        node = self.or_expr()
        if self.current.kind == ")":
            raise self.error("a tag, AND, OR or the end of the query (this ')' closes nothing)")
        return node

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.current.kind == "OR":
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.unary()]
        while True:
            if self.current.kind == "AND":
                self.advance()
            elif self.current.kind not in ("TAG", "NOT", "("):
                break
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        if self.current.kind == "NOT":
            self.nest(self.advance())
            node = Not(self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        token = self.current
        if token.kind == "TAG":
            self.advance()
            return Term(token.value)
        if token.kind == "(":
            self.nest(self.advance())
            node = self.or_expr()
            if self.current.kind != ")":
                raise self.error(f"')' to close the '(' at character {token.position + 1}")
            self.advance()
            self.depth -= 1
            return node
        raise self.error(self.TERM_START)


def parse(text: str) -> Node:
    """Parse a query into a tree of :class:`Term`, :class:`Not`, :class:`And` and :class:`Or`.

    Raises:
        QuerySyntaxError: the message says where and what was expected.
        QueryLimitError: the query is over a limit (length, terms or depth); the message says which.
    """
    return _Parser(text).parse()


def tag_names(node: Node) -> set[str]:
    """Every tag name a query tree mentions."""
    if isinstance(node, Term):
        return {node.name}
    if isinstance(node, Not):
        return tag_names(node.operand)
    return set().union(*(tag_names(operand) for operand in node.operands))


def tag_ids(names: set[str] | list[str] | tuple[str, ...]) -> dict[str, int]:
    """The ids of the tags of these names that the catalog has (one query)."""
    return dict(Tag.objects.filter(name__in=list(names)).values_list("name", "id")) if names else {}


def _to_q(node: Node, term: Callable[[tuple[str, ...]], Q]) -> Q:
    """``term(names)`` is the condition "has any of these tags": the tags ORed at one level
    become one term (``tag_id IN (...)``), a single look at the index per asset."""
    if isinstance(node, Term):
        return term((node.name,))
    if isinstance(node, Not):
        return ~_to_q(node.operand, term)
    if isinstance(node, And):
        return functools.reduce(operator.and_, (_to_q(operand, term) for operand in node.operands))
    names = tuple(operand.name for operand in node.operands if isinstance(operand, Term))
    rest = [_to_q(operand, term) for operand in node.operands if not isinstance(operand, Term)]
    return functools.reduce(operator.or_, ([term(names)] if names else []) + rest)


def compile_query(
    text: str,
    *,
    min_score: float = 0.0,
    source: str | None = None,
    review: str | None = None,
    ids: Mapping[str, int] | None = None,
) -> Q:
    """Compile a query to a ``Q`` object that filters :class:`~catalog.models.Asset`.

    Args:
        text: the query, e.g. ``'"coffee mug" AND NOT dog'``.
        min_score: a tag counts only with at least this score (0 to 1).
        source: only tags from this source, ``model`` or ``human``.
        review: only tags in this review state, ``suggested`` or ``accepted``.
        ids: the ids of the query's tags the catalog has (:func:`tag_ids`), when the caller
            already read them; read here otherwise.

    Raises:
        QuerySyntaxError: the text does not parse.
        QueryLimitError: the text is over a limit (length, terms or depth).
        QueryError: an option is out of range.
    """
    base = _rows(min_score, source, review)
    tree = parse(text)
    if ids is None:
        ids = tag_ids(tag_names(tree))
    return _to_q(tree, _term(base, ids, "pk"))


def matching_rows(
    text: str,
    *,
    min_score: float = 0.0,
    source: str | None = None,
    review: str | None = None,
    ids: Mapping[str, int] | None = None,
    counts: Mapping[str, int] | None = None,
) -> QuerySet[AssetTag] | None:
    """The assets :func:`compile_query` selects, as tag rows of one of the query's tags (one
    row an asset: a tag is on an asset once), when the query is a tag ANDed with anything
    (``a``, ``a AND b``, ``a AND NOT (b OR c)``); None for any other query.

    Counting a result walks it: from the rows of its tag, each asset's other terms are looked
    up in the tag rows' index. Walking assets instead looks each asset up in the assets' table
    first, which at a million assets is half the time of an ``a AND b`` count. ``counts`` (the
    kept per-tag counts, when read) picks the rarest tag to walk; arguments as
    :func:`compile_query`'s.
    """
    base = _rows(min_score, source, review)
    tree = parse(text)
    operands = tree.operands if isinstance(tree, And) else (tree,)
    walkable = [operand for operand in operands if isinstance(operand, Term)]
    if not walkable:
        return None
    if ids is None:
        ids = tag_ids(tag_names(tree))
    counts = counts or {}
    walked = min(walkable, key=lambda t: counts.get(t.name, float("inf")))
    if walked.name not in ids:
        return AssetTag.objects.none()
    rows = base.filter(tag_id=ids[walked.name]).order_by()
    rest = tuple(operand for operand in operands if operand is not walked)
    return rows.filter(_to_q(And(rest), _term(base, ids, "asset_id"))) if rest else rows


def _rows(min_score: float, source: str | None, review: str | None) -> QuerySet[AssetTag]:
    """The tag rows that count for a search with these options (checked; see :func:`compile_query`)."""
    if not 0.0 <= min_score <= 1.0:
        raise QueryError(f"min_score must be between 0 and 1, got {min_score}")
    if source is not None and source not in SOURCES:
        raise QueryError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if review is not None and review not in REVIEW_FILTERS:
        raise QueryError(
            f"review must be one of {', '.join(REVIEW_FILTERS)}, got {review!r} (rejected tags never match)"
        )
    base = AssetTag.objects.filter(score__gte=min_score).exclude(review=AssetTag.Review.REJECTED)
    if source is not None:
        base = base.filter(source=source)
    if review is not None:
        base = base.filter(review=review)
    return base


def _term(base: QuerySet[AssetTag], ids: Mapping[str, int], outer: str) -> Callable[[tuple[str, ...]], Q]:
    """``names -> Q``: "has any of these tags" for :func:`_to_q`, the asset being the outer
    query's column ``outer`` (an asset's ``pk``, a tag row's ``asset_id``)."""

    def term(names: tuple[str, ...]) -> Q:
        known = sorted({ids[name] for name in names if name in ids})
        if not known:  # no asset has them: Django drops the term (and NOT it keeps everything)
            return Q(pk__in=[])
        rows = base.filter(tag_id=known[0]) if len(known) == 1 else base.filter(tag_id__in=known)
        return Q(Exists(rows.filter(asset_id=OuterRef(outer))))

    return term
