"""Query builders: plain functions from typed arguments to search bodies.

They never talk to Elasticsearch; `readmodel.reader` runs what they build.
Paging is by `search_after` on the sort values plus the id as a tiebreaker,
so a page is as cheap at depth 10,000 as at depth 0 and stable while
documents are added. One helper (`paged`) pages every search, forward
(`first`, `after`) and backward (`last`, `before`: the same search with
every sort reversed, which the reader turns back into forward order).

Every argument is checked here, before it can reach Elasticsearch, by the
domain's own rules (domain/rules.py), so that no string a client sends can
make a search fail. The rule of thumb: a value that names something stored
(an id, a sku, a category or tag to filter by) and that the domain would
never have stored finds nothing, exactly as a value of nothing would; any
other unusable value (free text with control characters, an overlong
search, a cursor or position this service never handed out) is refused
with `InvalidQuery`, naming the argument.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.errors import InvalidInput
from domain.rules import (
    MAX_SAFE_INTEGER,
    IdMustBeWellFormed,
    SkuMustBeWellFormed,
    TextMustBeClean,
    TextMustFit,
)

__all__ = [
    "DEFAULT_PAGE",
    "EVERY_ROW",
    "MATCH_NONE",
    "MAX_CURSOR",
    "MAX_PREFIX",
    "MAX_SEARCH",
    "PRICE_BUCKETS",
    "InvalidQuery",
    "OrderFilter",
    "OrderSort",
    "Paging",
    "ProductFilter",
    "ProductSort",
    "Scope",
    "customer_search",
    "decode_cursor",
    "encode_cursor",
    "free_text",
    "lookup",
    "lookup_many",
    "order_search",
    "page_size",
    "paged",
    "paging",
    "position",
    "product_by_sku",
    "product_facets",
    "product_search",
    "product_suggest",
    "search_after",
    "stored_id",
    "stored_sku",
]

MAX_PAGE = 100
# The page a connection serves when neither `first` nor `last` is given.
DEFAULT_PAGE = 20
# Free text, in code points of its NFC form.
MAX_SEARCH = 200
MAX_PREFIX = 100
# The longest cursor a page can hand out is a NAME sort's: a 200-character
# name, every character a JSON escape of 12 bytes, in base64: about 3,300.
MAX_CURSOR = 8192

# A filter clause that matches nothing: a value that can never be stored.
MATCH_NONE: dict[str, Any] = {"match_none": {}}


@dataclass(frozen=True)
class Scope:
    """The rows a caller may reach (api/policy.py decides which): ANDed into the
    Elasticsearch query itself, so hits, totals, facets and cursors all stay
    inside it. The default reaches every row.

    `customer_id` keeps orders to that customer's and customers to that one;
    an empty or malformed id reaches nothing. `active_only` keeps products to
    active ones, whatever statuses a filter asks for."""

    active_only: bool = False
    customer_id: str | None = None

    def clauses(self, index: str) -> list[dict[str, Any]]:
        """The filter clauses this scope adds to a search of a read model."""
        if index == "products":
            return [{"term": {"status": "active"}}] if self.active_only else []
        if self.customer_id is None:
            return []
        customer = stored_id(self.customer_id)
        if customer is None:
            return [MATCH_NONE]
        field = "customer.id" if index == "orders" else "id"
        return [{"term": {field: customer}}]


EVERY_ROW = Scope()


class InvalidQuery(ValueError):
    """An argument a query cannot use; the message says which and why."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


def _stored_or_none(check: Callable[[], str]) -> str | None:
    """What the domain would have stored for a value, or None if it would refuse it."""
    try:
        return check()
    except InvalidInput:
        return None


def stored_id(value: str) -> str | None:
    """The id as the write side makes them, or None for a string that no id
    can be (empty, overlong, a control character, a lone surrogate): nothing
    has such an id, and it is never sent to Elasticsearch."""
    return _stored_or_none(lambda: IdMustBeWellFormed.check(value, "id"))


def stored_sku(value: str) -> str | None:
    """The sku as stored (trimmed, upper-cased), or None for one the domain refuses."""
    return _stored_or_none(lambda: SkuMustBeWellFormed.check(value))


def _category(value: str) -> str | None:
    # As domain/product.py stores a category: clean, lower-cased, 0-100 characters.
    return _stored_or_none(
        lambda: TextMustFit.check(value, "category", "category", required=False, lower=True)
    )


def _tag(value: str) -> str | None:
    # As TagsMustBeFew stores each tag: clean, lower-cased, 1-50 characters.
    return _stored_or_none(lambda: TextMustFit.check(value, "tag", "tag", lower=True))


def free_text(value: str | None, argument: str, limit: int) -> str:
    """Search text, cleaned by the rule every stored text passed (trimmed, NFC,
    no control characters, lone surrogates or noncharacters; tabs and line
    breaks are only spaces to a search) and bounded; "" when there is none."""
    if value is None:
        return ""
    try:
        text = TextMustBeClean.check(value, argument, multiline=True)
    except InvalidInput as error:
        raise InvalidQuery(error.message, argument) from None
    if len(text) > limit:
        raise InvalidQuery(f"{argument} is at most {limit} characters", argument)
    return text


_POSITION = re.compile(r"[0-9]{1,16}")


def position(value: str, argument: str) -> int:
    """An outbox position as a client sends it back (a consistency token, a
    subscription's `after`): ASCII digits up to the largest position a Long
    can carry. Python's int() would also take " 7", "+7", "1_000" and other
    scripts' digits, none of which this service hands out."""
    if not _POSITION.fullmatch(value) or int(value) > MAX_SAFE_INTEGER:
        raise InvalidQuery(
            f"{argument} is a position this service gave out (a mutation's "
            "consistencyToken or a notification's position): digits, "
            f"at most {MAX_SAFE_INTEGER}",
            argument,
        )
    return int(value)


class ProductSort(StrEnum):
    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NAME = "name"
    NEWEST = "newest"
    UNITS_SOLD = "units_sold"


_PRODUCT_SORTS: dict[ProductSort, list[dict[str, Any]]] = {
    ProductSort.RELEVANCE: [{"_score": "desc"}, {"created_at": "desc"}],
    ProductSort.PRICE_ASC: [{"price": "asc"}],
    ProductSort.PRICE_DESC: [{"price": "desc"}],
    ProductSort.NAME: [{"name_sort": "asc"}],
    ProductSort.NEWEST: [{"created_at": "desc"}],
    ProductSort.UNITS_SOLD: [{"units_sold": "desc"}],
}


@dataclass(frozen=True)
class ProductFilter:
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    statuses: tuple[str, ...] = field(default=("active",))


def encode_cursor(sort_values: list[Any]) -> str:
    raw = json.dumps(sort_values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a sort value")


_MALFORMED_CURSOR = "the cursor is malformed; pass one a page returned"


def _is_sort_value(value: Any) -> bool:
    if isinstance(value, str):
        # A JSON escape can make a lone surrogate, which no request body can carry.
        return _encodable(value)
    if isinstance(value, float):
        return math.isfinite(value)  # json reads 1e999 as infinity
    return isinstance(value, int) and not isinstance(value, bool)


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def decode_cursor(cursor: str, expected_length: int, argument: str = "after") -> list[Any]:
    if len(cursor) > MAX_CURSOR:
        raise InvalidQuery(_MALFORMED_CURSOR, argument)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_constant=_no_constant)
    except (ValueError, UnicodeError):
        raise InvalidQuery(_MALFORMED_CURSOR, argument) from None
    if not isinstance(values, list) or len(values) != expected_length:
        raise InvalidQuery("the cursor belongs to another sort order or query", argument)
    if not all(_is_sort_value(v) for v in values):
        raise InvalidQuery(_MALFORMED_CURSOR, argument)
    return values


_LONG = range(-(2**63), 2**63)
# Scores are 32-bit floats.
_MAX_SCORE = 3.4e38


def _fits(value: Any, sort: dict[str, Any]) -> bool:
    """Whether a cursor's value is of the kind its sort field gives: every sort
    field but these is a long or a date, which sorts as a long (epoch millis)."""
    (name,) = sort
    if name == "id":  # the tiebreaker: an id as the write side makes them
        return isinstance(value, str) and stored_id(value) == value
    if name == "name_sort":
        return isinstance(value, str)
    if name == "_score":
        return isinstance(value, int | float) and abs(value) <= _MAX_SCORE
    return isinstance(value, int) and value in _LONG


def search_after(
    cursor: str, sort_clause: list[dict[str, Any]], argument: str = "after"
) -> list[Any]:
    """The cursor's sort values, each of the type its sort field takes: a value
    Elasticsearch cannot parse for its field would fail the whole search."""
    values = decode_cursor(cursor, len(sort_clause), argument)
    if not all(_fits(v, s) for v, s in zip(values, sort_clause, strict=True)):
        raise InvalidQuery("the cursor belongs to another sort order or query", argument)
    return values


def page_size(first: int, argument: str = "first") -> int:
    # bool is an int to Python, and no page size to a client.
    if isinstance(first, bool) or not isinstance(first, int) or not 0 < first <= MAX_PAGE:
        raise InvalidQuery(f"{argument} must be between 1 and {MAX_PAGE}", argument)
    return first


@dataclass(frozen=True)
class Paging:
    """One page of a connection, as Relay's cursor specification asks for it:
    `size` items after the cursor (forward), or the `size` items just before
    it (backward), which a search finds by running with every sort reversed."""

    size: int = DEFAULT_PAGE
    cursor: str | None = None
    backward: bool = False

    @property
    def cursor_argument(self) -> str:
        return "before" if self.backward else "after"


def paging(
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Paging:
    """The page the arguments ask for, or `InvalidQuery` naming the argument.

    One direction per request: `first` with `after`, or `last` with `before`
    (either cursor alone pages in its direction with the default size). Relay
    never sends both directions at once, and a search can only start from one
    cursor; an empty cursor is no cursor."""
    if first is not None and last is not None:
        raise InvalidQuery("give first or last, not both", "last")
    if after and before:
        raise InvalidQuery("give after or before, not both", "before")
    if first is not None and before:
        raise InvalidQuery("before pages backward: give it with last, not first", "before")
    if last is not None and after:
        raise InvalidQuery("after pages forward: give it with first, not last", "after")
    if last is not None or before:
        size = DEFAULT_PAGE if last is None else page_size(last, "last")
        return Paging(size, before or None, backward=True)
    return Paging(DEFAULT_PAGE if first is None else page_size(first), after or None)


def _reversed(sort: dict[str, Any]) -> dict[str, Any]:
    """A sort clause the other way round. A document without the field sorts
    last by default in both orders; reversed, it must come first, so that the
    backward page is exactly the forward order read from the other end."""
    ((name, order),) = sort.items()
    other = "asc" if order == "desc" else "desc"
    if name == "_score":  # every hit has one; no `missing` to state
        return {name: other}
    return {name: {"order": other, "missing": "_first"}}


def paged(body: dict[str, Any], sort_clause: list[dict[str, Any]], page: Paging) -> dict[str, Any]:
    """`body` with the sort, size and `search_after` of one page: one more hit
    than the page asks for tells whether another page follows (precedes, when
    paging backward). The cursor is checked against the forward sort: both
    directions hand out the same cursors."""
    values = (
        None
        if page.cursor is None
        else search_after(page.cursor, sort_clause, page.cursor_argument)
    )
    body["sort"] = [_reversed(s) for s in sort_clause] if page.backward else sort_clause
    body["size"] = page.size + 1
    body["track_total_hits"] = True
    if values is not None:
        body["search_after"] = values
    return body


def product_filters(f: ProductFilter) -> dict[str, list[dict[str, Any]]]:
    """Filter clauses by facet name, so each facet can leave out its own."""
    if f.min_price is not None and f.min_price < 0:
        raise InvalidQuery("minPrice cannot be negative", "filter.minPrice")
    if f.max_price is not None and f.max_price < 0:
        raise InvalidQuery("maxPrice cannot be negative", "filter.maxPrice")
    if f.min_price is not None and f.max_price is not None and f.min_price > f.max_price:
        raise InvalidQuery("minPrice is above maxPrice", "filter.minPrice")
    clauses: dict[str, list[dict[str, Any]]] = {
        "status": [],
        "categories": [],
        "tags": [],
        "price": [],
        "in_stock": [],
    }
    if f.statuses:
        clauses["status"].append({"terms": {"status": list(f.statuses)}})
    if f.categories:  # any of them; one that could never be stored matches nothing
        categories = _stored(f.categories, _category)
        clauses["categories"].append(
            {"terms": {"category": categories}} if categories else MATCH_NONE
        )
    if f.tags:  # every tag asked for must be there
        tags = [_tag(t) for t in f.tags]
        clauses["tags"] += (
            [{"term": {"tags": t}} for t in dict.fromkeys(tags) if t is not None]
            if None not in tags
            else [MATCH_NONE]
        )
    if f.min_price is not None or f.max_price is not None:
        bounds = {"gte": f.min_price, "lte": f.max_price}
        clauses["price"].append(
            {"range": {"price": {k: v for k, v in bounds.items() if v is not None}}}
        )
    if f.in_stock is not None:
        clauses["in_stock"].append({"term": {"in_stock": f.in_stock}})
    return clauses


def _stored(values: Iterable[str], stored: Callable[[str], str | None]) -> list[str]:
    """The values as stored, once each, leaving out those that never could be."""
    return [v for v in dict.fromkeys(map(stored, values)) if v is not None]


# Price facet buckets, in minor units; the last is open-ended.
PRICE_BUCKETS: list[tuple[int, int | None]] = [
    (0, 1000),
    (1000, 2500),
    (2500, 5000),
    (5000, 10000),
    (10000, None),
]


def _others(clauses: dict[str, list[dict[str, Any]]], own: str) -> dict[str, Any]:
    return {"bool": {"filter": [c for name, cs in clauses.items() if name != own for c in cs]}}


def product_facets(clauses: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each facet counts with every filter but its own, so a UI can offer the other choices."""
    return {
        "categories": {
            "filter": _others(clauses, "categories"),
            "aggs": {"values": {"terms": {"field": "category", "size": 50}}},
        },
        "tags": {
            "filter": _others(clauses, "tags"),
            "aggs": {"values": {"terms": {"field": "tags", "size": 50}}},
        },
        "price": {
            "filter": _others(clauses, "price"),
            "aggs": {
                "values": {
                    "range": {
                        "field": "price",
                        "ranges": [
                            {"from": low} if high is None else {"from": low, "to": high}
                            for low, high in PRICE_BUCKETS
                        ],
                    }
                }
            },
        },
        "in_stock": {
            "filter": _others(clauses, "in_stock"),
            "aggs": {"values": {"filter": {"term": {"in_stock": True}}}},
        },
    }


def product_search(
    *,
    search: str | None = None,
    filter: ProductFilter | None = None,
    sort: ProductSort | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    facets: bool = False,
    scope: Scope = EVERY_ROW,
) -> dict[str, Any]:
    page = paging(first, after, last, before)
    text = free_text(search, "search", MAX_SEARCH)
    order = sort or (ProductSort.RELEVANCE if text else ProductSort.NEWEST)
    if order is ProductSort.RELEVANCE and not text:
        order = ProductSort.NEWEST
    clauses = product_filters(filter or ProductFilter())
    every = [c for cs in clauses.values() for c in cs]
    # The caller's rows: in the query, so facets and totals count only those.
    mandatory = scope.clauses("products")
    query: dict[str, Any] = {"bool": {}}
    if text:
        # Either every word appears in some field (cross_fields: a name word and a
        # tag together), or the text is a whole sku, which then ranks first.
        query["bool"]["must"] = [
            {
                "bool": {
                    "should": [
                        {
                            "multi_match": {
                                "query": text,
                                "fields": ["name^3", "description", "tags.text^2"],
                                "type": "cross_fields",
                                "operator": "and",
                            }
                        },
                        {"term": {"sku": {"value": text.upper(), "boost": 10}}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        ]
    sort_clause = [*_PRODUCT_SORTS[order], {"id": "asc"}]
    body = paged({}, sort_clause, page)
    if facets:
        # Facets count over the text query alone, each with the other filters;
        # the hits get every filter through post_filter.
        query["bool"]["filter"] = [*mandatory, *clauses["status"]]
        body["post_filter"] = {"bool": {"filter": every}}
        body["aggs"] = product_facets(clauses)
    else:
        query["bool"]["filter"] = [*mandatory, *every]
    body["query"] = query
    return body


class OrderSort(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    TOTAL_DESC = "total_desc"
    TOTAL_ASC = "total_asc"


_ORDER_SORTS: dict[OrderSort, list[dict[str, Any]]] = {
    OrderSort.NEWEST: [{"placed_at": "desc"}],
    OrderSort.OLDEST: [{"placed_at": "asc"}],
    OrderSort.TOTAL_DESC: [{"total": "desc"}],
    OrderSort.TOTAL_ASC: [{"total": "asc"}],
}


@dataclass(frozen=True)
class OrderFilter:
    customer_id: str | None = None
    statuses: tuple[str, ...] = ()
    placed_after: str | None = None  # ISO 8601, inclusive
    placed_before: str | None = None  # ISO 8601, exclusive
    min_total: int | None = None
    max_total: int | None = None


def _instant(value: str | None, argument: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset; compared as instants, not as text."""
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{argument} is not an ISO 8601 time", argument) from None
    if instant.tzinfo is None:
        raise InvalidQuery(
            f"give {argument} with a UTC offset, e.g. 2026-11-26T10:00:00Z", argument
        )
    return instant


def order_search(
    *,
    filter: OrderFilter | None = None,
    sort: OrderSort | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    scope: Scope = EVERY_ROW,
) -> dict[str, Any]:
    page = paging(first, after, last, before)
    f = filter or OrderFilter()
    if f.min_total is not None and f.max_total is not None and f.min_total > f.max_total:
        raise InvalidQuery("minTotal is above maxTotal", "filter.minTotal")
    after_time = _instant(f.placed_after, "filter.placedAfter")
    before_time = _instant(f.placed_before, "filter.placedBefore")
    if after_time and before_time and after_time >= before_time:
        raise InvalidQuery("placedAfter is not before placedBefore", "filter.placedAfter")
    # The caller's rows first: a customer's own, whatever customerId it filters by
    # (another's then ANDs to nothing), so totals and cursors see only those.
    clauses: list[dict[str, Any]] = scope.clauses("orders")
    if f.customer_id is not None:  # "" too: it is no customer's id
        customer = stored_id(f.customer_id)
        clauses.append(MATCH_NONE if customer is None else {"term": {"customer.id": customer}})
    if f.statuses:
        clauses.append({"terms": {"status": list(f.statuses)}})
    placed = {"gte": f.placed_after, "lt": f.placed_before}
    if any(placed.values()):
        clauses.append({"range": {"placed_at": {k: v for k, v in placed.items() if v}}})
    total = {"gte": f.min_total, "lte": f.max_total}
    if any(v is not None for v in total.values()):
        clauses.append({"range": {"total": {k: v for k, v in total.items() if v is not None}}})
    sort_clause = [*_ORDER_SORTS[sort or OrderSort.NEWEST], {"id": "asc"}]
    return paged({"query": {"bool": {"filter": clauses}}}, sort_clause, page)


def customer_search(
    *,
    search: str | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    scope: Scope = EVERY_ROW,
) -> dict[str, Any]:
    page = paging(first, after, last, before)
    text = free_text(search, "search", MAX_SEARCH)
    query: dict[str, Any] = {
        "bool": {"filter": [*scope.clauses("customers"), {"term": {"erased": False}}]}
    }
    if text:
        query["bool"]["must"] = [
            {
                "multi_match": {
                    "query": text,
                    "fields": ["name^2", "email"],
                    "operator": "and",
                }
            }
        ]
        sort_clause: list[dict[str, Any]] = [{"_score": "desc"}, {"id": "asc"}]
    else:
        sort_clause = [{"name_sort": "asc"}, {"id": "asc"}]
    return paged({"query": query}, sort_clause, page)


def product_suggest(prefix: str, size: int = 10, scope: Scope = EVERY_ROW) -> dict[str, Any]:
    """Active products whose name holds every word of the prefix, the last one
    as the start of a word, in any order ("steel ke": Steel kettle, Kettle of
    steel), sorted by name: what the schema's productSuggestions promises.

    Active only, for every caller: a suggestion shows what `products` shows by
    default (`ProductFilter.statuses`), and staff who want drafts search
    `products` with a status filter. Matching any word, not only the first, is
    deliberate: "ke" should find the Camping kettle as well as the Kettle.

    A search rather than the completion suggester: a suggester cannot filter
    (only through contexts, which the `name_suggest` mapping does not have), so
    it would suggest a draft's name. Over-fetching suggestions and dropping the
    others would lose the active ones behind many drafts; a filter in the query
    cannot."""
    prefix = free_text(prefix, "prefix", MAX_PREFIX)
    if not prefix:
        raise InvalidQuery(f"prefix is 1 to {MAX_PREFIX} characters", "prefix")
    # The scope stays the one place that says who sees what; for anonymous
    # callers and customers it asks for the same term, which is sent once.
    active = {"term": {"status": "active"}}
    return {
        "_source": ["id", "name", "sku"],
        "query": {
            "bool": {
                "must": [{"match_bool_prefix": {"name": {"query": prefix, "operator": "and"}}}],
                "filter": [active, *(c for c in scope.clauses("products") if c != active)],
            }
        },
        "sort": [{"name_sort": "asc"}, {"id": "asc"}],
        "size": page_size(size),
    }


def lookup(index: str, key: str, scope: Scope = EVERY_ROW) -> dict[str, Any]:
    """One document by id, only if it is within the caller's rows: someone
    else's order is not found, exactly as a missing one (ids cannot be probed)."""
    return {
        "query": {"bool": {"filter": [{"ids": {"values": [key]}}, *scope.clauses(index)]}},
        "size": 1,
    }


def lookup_many(keys: list[str], scopes: dict[str, tuple[str, Scope]]) -> dict[str, Any]:
    """Documents by id across read models (ids are unique across them), for one
    search over their aliases. `scopes` maps each read model to search to its
    alias and the caller's rows in it; each read model's clause keeps to its own
    index (`_index` takes an alias) and its own rows, and is named after the
    read model, so a hit says where it came from (`matched_queries`) and a
    document outside the caller's rows is not found."""
    return {
        "query": {
            "bool": {
                "filter": [{"ids": {"values": keys}}],
                "should": [
                    {
                        "bool": {
                            "filter": [{"term": {"_index": alias}}, *scope.clauses(index)],
                            "_name": index,
                        }
                    }
                    for index, (alias, scope) in scopes.items()
                ],
                "minimum_should_match": 1,
            }
        },
        "size": len(keys),
    }


def product_by_sku(sku: str, scope: Scope = EVERY_ROW) -> dict[str, Any]:
    """The product with this (stored) sku, if within the caller's rows."""
    return {
        "query": {"bool": {"filter": [{"term": {"sku": sku}}, *scope.clauses("products")]}},
        "size": 1,
    }
