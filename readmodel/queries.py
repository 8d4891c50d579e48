"""Query builders: plain functions from typed arguments to search bodies.

They never talk to Elasticsearch; `readmodel.reader` runs what they build.
Paging is by `search_after` on the sort values plus the id as a tiebreaker,
so a page is as cheap at depth 10,000 as at depth 0 and stable while
documents are added.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "PRICE_BUCKETS",
    "InvalidQuery",
    "OrderFilter",
    "OrderSort",
    "ProductFilter",
    "ProductSort",
    "customer_search",
    "decode_cursor",
    "encode_cursor",
    "order_search",
    "product_facets",
    "product_search",
    "product_suggest",
]

MAX_PAGE = 100


class InvalidQuery(ValueError):
    """An argument a query cannot use; the message says which and why."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


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


def decode_cursor(cursor: str, expected_length: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery("the cursor is malformed; pass one a page returned", "after") from None
    if not isinstance(values, list) or len(values) != expected_length:
        raise InvalidQuery("the cursor belongs to another sort order or query", "after")
    if not all(isinstance(v, str | int | float) for v in values):
        raise InvalidQuery("the cursor is malformed; pass one a page returned", "after")
    return values


def page_size(first: int) -> int:
    if not 0 < first <= MAX_PAGE:
        raise InvalidQuery(f"first must be between 1 and {MAX_PAGE}", "first")
    return first


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
    if f.categories:
        clauses["categories"].append({"terms": {"category": [c.lower() for c in f.categories]}})
    for tag in f.tags:  # every tag asked for must be there
        clauses["tags"].append({"term": {"tags": tag.lower()}})
    if f.min_price is not None or f.max_price is not None:
        bounds = {"gte": f.min_price, "lte": f.max_price}
        clauses["price"].append(
            {"range": {"price": {k: v for k, v in bounds.items() if v is not None}}}
        )
    if f.in_stock is not None:
        clauses["in_stock"].append({"term": {"in_stock": f.in_stock}})
    return clauses


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
    first: int = 20,
    after: str | None = None,
    facets: bool = False,
) -> dict[str, Any]:
    size = page_size(first)
    text = (search or "").strip()
    if len(text) > 200:
        raise InvalidQuery("search is at most 200 characters", "search")
    order = sort or (ProductSort.RELEVANCE if text else ProductSort.NEWEST)
    if order is ProductSort.RELEVANCE and not text:
        order = ProductSort.NEWEST
    clauses = product_filters(filter or ProductFilter())
    every = [c for cs in clauses.values() for c in cs]
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
    body: dict[str, Any] = {
        "sort": sort_clause,
        "size": size + 1,  # one more tells whether a next page exists
        "track_total_hits": True,
    }
    if facets:
        # Facets count over the text query alone, each with the other filters;
        # the hits get every filter through post_filter.
        query["bool"]["filter"] = clauses["status"]
        body["post_filter"] = {"bool": {"filter": every}}
        body["aggs"] = product_facets(clauses)
    else:
        query["bool"]["filter"] = every
    body["query"] = query
    if after:
        body["search_after"] = decode_cursor(after, len(sort_clause))
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


def order_search(
    *,
    filter: OrderFilter | None = None,
    sort: OrderSort | None = None,
    first: int = 20,
    after: str | None = None,
) -> dict[str, Any]:
    size = page_size(first)
    f = filter or OrderFilter()
    if f.min_total is not None and f.max_total is not None and f.min_total > f.max_total:
        raise InvalidQuery("minTotal is above maxTotal", "filter.minTotal")
    if f.placed_after and f.placed_before and f.placed_after >= f.placed_before:
        raise InvalidQuery("placedAfter is not before placedBefore", "filter.placedAfter")
    clauses: list[dict[str, Any]] = []
    if f.customer_id:
        clauses.append({"term": {"customer.id": f.customer_id}})
    if f.statuses:
        clauses.append({"terms": {"status": list(f.statuses)}})
    placed = {"gte": f.placed_after, "lt": f.placed_before}
    if any(placed.values()):
        clauses.append({"range": {"placed_at": {k: v for k, v in placed.items() if v}}})
    total = {"gte": f.min_total, "lte": f.max_total}
    if any(v is not None for v in total.values()):
        clauses.append({"range": {"total": {k: v for k, v in total.items() if v is not None}}})
    sort_clause = [*_ORDER_SORTS[sort or OrderSort.NEWEST], {"id": "asc"}]
    body: dict[str, Any] = {
        "query": {"bool": {"filter": clauses}},
        "sort": sort_clause,
        "size": size + 1,
        "track_total_hits": True,
    }
    if after:
        body["search_after"] = decode_cursor(after, len(sort_clause))
    return body


def customer_search(
    *, search: str | None = None, first: int = 20, after: str | None = None
) -> dict[str, Any]:
    size = page_size(first)
    text = (search or "").strip()
    if len(text) > 200:
        raise InvalidQuery("search is at most 200 characters", "search")
    query: dict[str, Any] = {"bool": {"filter": [{"term": {"erased": False}}]}}
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
    body: dict[str, Any] = {
        "query": query,
        "sort": sort_clause,
        "size": size + 1,
        "track_total_hits": True,
    }
    if after:
        body["search_after"] = decode_cursor(after, len(sort_clause))
    return body


def product_suggest(prefix: str, size: int = 10) -> dict[str, Any]:
    prefix = prefix.strip()
    if not prefix or len(prefix) > 100:
        raise InvalidQuery("prefix is 1 to 100 characters", "prefix")
    return {
        "_source": ["id", "name", "sku"],
        "suggest": {
            "names": {
                "prefix": prefix,
                "completion": {
                    "field": "name_suggest",
                    # Not skip_duplicates: it folds two products whose names share
                    # a word into one suggestion. The reader folds by product instead.
                    "size": page_size(size),
                },
            }
        },
    }
