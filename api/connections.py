"""Relay-style connections: edges with cursors, page info, totals, and facets."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from api.types import Customer, Order, Product
from readmodel.queries import PRICE_BUCKETS
from readmodel.reader import Page

__all__ = [
    "CustomerConnection",
    "OrderConnection",
    "PageInfo",
    "ProductConnection",
    "selects",
]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type
class FacetValue:
    value: str
    count: int


@strawberry.type(description="Minor units; `max` is exclusive and null for the last bucket.")
class PriceRangeFacet:
    min: int
    max: int | None
    count: int


@strawberry.type(
    description="Counts over the search with every filter applied except the facet's own, "
    "so a UI can show the other choices."
)
class ProductFacets:
    categories: list[FacetValue]
    tags: list[FacetValue]
    price_ranges: list[PriceRangeFacet]
    in_stock: int = strawberry.field(description="Products with units available.")

    @classmethod
    def from_page(cls, facets: dict[str, list[tuple[Any, int]]]) -> ProductFacets:
        prices = dict(facets["price"])
        ranges = []
        for low, high in PRICE_BUCKETS:
            key = f"{float(low)}-{'*' if high is None else float(high)}"
            ranges.append(PriceRangeFacet(min=low, max=high, count=prices.get(key, 0)))
        return cls(
            categories=[FacetValue(value=str(v), count=n) for v, n in facets["categories"]],
            tags=[FacetValue(value=str(v), count=n) for v, n in facets["tags"]],
            price_ranges=ranges,
            in_stock=facets["in_stock"][0][1],
        )


def _hits(page: Page) -> list[tuple[dict[str, Any], str]]:
    return list(zip(page.documents, page.cursors, strict=True))


def _page_info(page: Page) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next, end_cursor=page.cursors[-1] if page.cursors else None
    )


@strawberry.type
class ProductEdge:
    node: Product
    cursor: str


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo
    total_count: int
    facets: ProductFacets | None = strawberry.field(
        description="Asking for it adds the counts to the same search."
    )

    @classmethod
    def from_page(cls, page: Page) -> ProductConnection:
        return cls(
            edges=[ProductEdge(node=Product.from_document(d), cursor=c) for d, c in _hits(page)],
            page_info=_page_info(page),
            total_count=page.total,
            facets=None if page.facets is None else ProductFacets.from_page(page.facets),
        )


@strawberry.type
class OrderEdge:
    node: Order
    cursor: str


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def from_page(cls, page: Page) -> OrderConnection:
        return cls(
            edges=[OrderEdge(node=Order.from_document(d), cursor=c) for d, c in _hits(page)],
            page_info=_page_info(page),
            total_count=page.total,
        )


@strawberry.type
class CustomerEdge:
    node: Customer
    cursor: str


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def from_page(cls, page: Page) -> CustomerConnection:
        return cls(
            edges=[CustomerEdge(node=Customer.from_document(d), cursor=c) for d, c in _hits(page)],
            page_info=_page_info(page),
            total_count=page.total,
        )


def selects(fields: list[Any], name: str) -> bool:
    """Whether the selection asks for a field `name`, directly or through fragments."""
    for field in fields:
        if isinstance(field, SelectedField) and field.name == name:
            return True
        if isinstance(field, FragmentSpread | InlineFragment) and selects(field.selections, name):
            return True
    return False
