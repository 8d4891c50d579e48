"""Relay-style connections: edges with cursors, page info, totals, and facets.

One generic `Connection` and `Edge`; strawberry names each use after its node
type (`Connection[Order]` is `OrderConnection`, its edges `OrderEdge`), so
the schema keeps the names clients know. Products add their facets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import strawberry

from api.types import Customer, Order, Product
from readmodel.reader import Page, ProductFacetCounts

__all__ = [
    "Connection",
    "CustomerConnection",
    "Edge",
    "OrderConnection",
    "PageInfo",
    "ProductConnection",
]

NodeType = TypeVar("NodeType")


@strawberry.type(description="Where a page sits in its connection (Relay's cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="More follow `endCursor`. Known when paging forward (`first`); "
        "false when paging backward."
    )
    has_previous_page: bool = strawberry.field(
        description="More precede `startCursor`. Known when paging backward (`last`); "
        "false when paging forward."
    )
    start_cursor: str | None = strawberry.field(
        description="Pass as `before` (with `last`) for the page before."
    )
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")

    @classmethod
    def from_page(cls, page: Page) -> PageInfo:
        return cls(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        )


@strawberry.type(description="One value of a facet and how many products have it.")
class FacetValue:
    value: str = strawberry.field(description="The category or tag.")
    count: int = strawberry.field(description="Products of the search that have it.")


@strawberry.type(description="Minor units; `max` is exclusive and null for the last bucket.")
class PriceRangeFacet:
    min: int = strawberry.field(description="Lowest price in the bucket, minor units, inclusive.")
    max: int | None = strawberry.field(
        description="Upper bound, minor units, exclusive; null for the last, open bucket."
    )
    count: int = strawberry.field(description="Products of the search priced in the bucket.")


@strawberry.type(
    description="Counts over the search with every filter applied except the facet's own, "
    "so a UI can show the other choices."
)
class ProductFacets:
    categories: list[FacetValue] = strawberry.field(
        description="The categories of the products found, each with its count."
    )
    tags: list[FacetValue] = strawberry.field(
        description="The tags of the products found (up to 50), each with its count."
    )
    price_ranges: list[PriceRangeFacet] = strawberry.field(description="Products per price bucket.")
    in_stock: int = strawberry.field(description="Products with units available.")

    @classmethod
    def from_counts(cls, counts: ProductFacetCounts) -> ProductFacets:
        return cls(
            categories=[FacetValue(value=v, count=n) for v, n in counts.categories],
            tags=[FacetValue(value=v, count=n) for v, n in counts.tags],
            price_ranges=[
                PriceRangeFacet(min=b.min, max=b.max, count=b.count) for b in counts.prices
            ],
            in_stock=counts.in_stock,
        )


@strawberry.type(description="One item of a connection's page, with its cursor.")
class Edge(Generic[NodeType]):
    node: NodeType = strawberry.field(description="The item.")
    cursor: str = strawberry.field(
        description="Opaque; pass it as `after` or `before` to page from this item, "
        "with the same arguments otherwise."
    )


@strawberry.type(
    description="One page of a list (Relay's cursor connections): the items as edges, "
    "where the page sits, and how many items the whole list holds."
)
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]] = strawberry.field(
        description="The page's items in the list's order (up to 100)."
    )
    page_info: PageInfo = strawberry.field(description="Cursors to page on from here.")
    total_count: int = strawberry.field(
        description="Items in the whole list the caller may see, not only this page."
    )

    @classmethod
    def from_page(cls, page: Page, build: Callable[[dict[str, Any]], NodeType]) -> Self:
        """The page's documents as edges; `build` makes each node from its document."""
        return cls(
            edges=[
                Edge(node=build(d), cursor=c)
                for d, c in zip(page.documents, page.cursors, strict=True)
            ],
            page_info=PageInfo.from_page(page),
            total_count=page.total,
        )


@strawberry.type(
    description="One page of products, with facet counts over the whole search when asked."
)
class ProductConnection(Connection[Product]):
    facets: ProductFacets | None = strawberry.field(
        default=None, description="Asking for it adds the counts to the same search."
    )

    @classmethod
    def from_product_page(cls, page: Page) -> ProductConnection:
        connection = cls.from_page(page, Product.from_document)
        if page.facets is not None:
            connection.facets = ProductFacets.from_counts(page.facets)
        return connection


OrderConnection = Connection[Order]
CustomerConnection = Connection[Customer]
