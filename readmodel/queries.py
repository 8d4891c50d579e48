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
    "InvalidQuery",
    "ProductFilter",
    "ProductSort",
    "decode_cursor",
    "encode_cursor",
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


def product_filters(f: ProductFilter) -> list[dict[str, Any]]:
    if f.min_price is not None and f.min_price < 0:
        raise InvalidQuery("minPrice cannot be negative", "filter.minPrice")
    if f.max_price is not None and f.max_price < 0:
        raise InvalidQuery("maxPrice cannot be negative", "filter.maxPrice")
    if f.min_price is not None and f.max_price is not None and f.min_price > f.max_price:
        raise InvalidQuery("minPrice is above maxPrice", "filter.minPrice")
    clauses: list[dict[str, Any]] = []
    if f.statuses:
        clauses.append({"terms": {"status": list(f.statuses)}})
    if f.categories:
        clauses.append({"terms": {"category": [c.lower() for c in f.categories]}})
    for tag in f.tags:  # every tag asked for must be there
        clauses.append({"term": {"tags": tag.lower()}})
    if f.min_price is not None or f.max_price is not None:
        bounds = {"gte": f.min_price, "lte": f.max_price}
        clauses.append({"range": {"price": {k: v for k, v in bounds.items() if v is not None}}})
    if f.in_stock is not None:
        clauses.append({"term": {"in_stock": f.in_stock}})
    return clauses


def product_search(
    *,
    search: str | None = None,
    filter: ProductFilter | None = None,
    sort: ProductSort | None = None,
    first: int = 20,
    after: str | None = None,
) -> dict[str, Any]:
    size = page_size(first)
    text = (search or "").strip()
    if len(text) > 200:
        raise InvalidQuery("search is at most 200 characters", "search")
    order = sort or (ProductSort.RELEVANCE if text else ProductSort.NEWEST)
    if order is ProductSort.RELEVANCE and not text:
        order = ProductSort.NEWEST
    query: dict[str, Any] = {"bool": {"filter": product_filters(filter or ProductFilter())}}
    if text:
        query["bool"]["must"] = [
            {
                "multi_match": {
                    "query": text,
                    "fields": ["name^3", "description", "tags^2", "sku^4"],
                    "type": "best_fields",
                    "operator": "and",
                }
            }
        ]
    sort_clause = [*_PRODUCT_SORTS[order], {"id": "asc"}]
    body: dict[str, Any] = {
        "query": query,
        "sort": sort_clause,
        "size": size + 1,  # one more tells whether a next page exists
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
                    "size": page_size(size),
                    "skip_duplicates": True,
                },
            }
        },
    }
