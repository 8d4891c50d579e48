"""Runs the query builders against the read models' aliases.

Also answers "indexed up to": where each projection is, for read-your-writes.
Waits for a consistency token go through the process's one `Progress`
watcher (readmodel/progress.py), never a poll loop of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from readmodel.checkpoints import Checkpoints
from readmodel.indexes import INDEXES
from readmodel.progress import Progress
from readmodel.queries import (
    EVERY_ROW,
    PRICE_BUCKETS,
    OrderFilter,
    OrderSort,
    ProductFilter,
    ProductSort,
    Scope,
    customer_search,
    encode_cursor,
    lookup,
    lookup_many,
    order_search,
    product_by_sku,
    product_search,
    product_suggest,
    stored_id,
    stored_sku,
)

__all__ = ["Page", "PriceBucket", "ProductFacetCounts", "Reader", "Staleness"]


@dataclass(frozen=True)
class PriceBucket:
    """Products priced from `min` (inclusive) to `max` (exclusive; None: no bound), minor units."""

    min: int
    max: int | None
    count: int


@dataclass(frozen=True)
class ProductFacetCounts:
    """A product search's facets: (value, count) pairs, the price buckets in
    `PRICE_BUCKETS` order, and how many products have units available."""

    categories: list[tuple[str, int]]
    tags: list[tuple[str, int]]
    prices: list[PriceBucket]
    in_stock: int


@dataclass(frozen=True)
class Page:
    """One page of a search, always in the search's own (forward) order."""

    documents: list[dict[str, Any]]
    cursors: list[str]
    total: int
    has_next: bool
    # Relay's rule: only a backward page (`last`) looks for items before it.
    has_previous: bool = False
    facets: ProductFacetCounts | None = None  # only when asked for

    @property
    def start_cursor(self) -> str | None:
        return self.cursors[0] if self.cursors else None

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


@dataclass(frozen=True)
class Staleness:
    """A read that asked for a position and did not get it in time."""

    wanted: int
    reached: int
    # The wanted position is beyond the outbox head: no wait could reach it, so
    # the read answered at once instead of waiting out its bound.
    beyond_head: bool = False

    @property
    def behind(self) -> int:
        return max(0, self.wanted - self.reached)


class Reader:
    def __init__(
        self,
        client: AsyncElasticsearch,
        checkpoints: Checkpoints,
        *,
        index_prefix: str,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.checkpoints = checkpoints
        self.prefix = index_prefix
        # Shared by every wait of the process; the composition root passes its own.
        self.progress = progress or Progress(checkpoints.engine)

    def alias(self, name: str) -> str:
        return INDEXES[name].alias(self.prefix)

    async def get(self, name: str, id: str, scope: Scope = EVERY_ROW) -> dict[str, Any] | None:
        """The document, or None; for any string at all. An id no document can
        have (empty, 10,000 characters, a lone surrogate) is not sent: the
        client would refuse it or Elasticsearch fail on it. A scope that
        restricts rows looks the id up with the scope's filter in the query:
        a document outside it is None, as a missing one is."""
        key = stored_id(id)
        if key is None:
            return None
        if scope != EVERY_ROW:
            return await self._first(name, lookup(name, key, scope))
        try:
            found = await self.client.get(index=self.alias(name), id=key)
        except NotFoundError:
            return None
        source: dict[str, Any] = found["_source"]
        return source

    async def find(
        self, ids: list[str], scopes: dict[str, Scope]
    ) -> list[tuple[str, dict[str, Any]] | None]:
        """For each id, (read model, document), or None where no read model of
        `scopes` has it within that read model's scope: one search over their
        aliases, whatever the number of read models. An id no document can
        have is not sent, as with `get`."""
        keys = list(dict.fromkeys(k for k in map(stored_id, ids) if k is not None))
        if not keys or not scopes:
            return [None] * len(ids)
        aliases = {name: (self.alias(name), scope) for name, scope in scopes.items()}
        result = await self.client.search(
            index=",".join(alias for alias, _ in aliases.values()),
            body=lookup_many(keys, aliases),
        )
        found = {
            hit["_id"]: (hit["matched_queries"][0], hit["_source"])
            for hit in result["hits"]["hits"]
            if hit.get("matched_queries")
        }
        return [None if (key := stored_id(i)) is None else found.get(key) for i in ids]

    async def product_by_sku(self, sku: str, scope: Scope = EVERY_ROW) -> dict[str, Any] | None:
        """The product with this sku (as a client writes it: any case, spaces
        around), or None; a string no sku can be is not looked up."""
        key = stored_sku(sku)
        if key is None:
            return None
        return await self._first("products", product_by_sku(key, scope))

    async def _first(self, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        result = await self.client.search(index=self.alias(name), body=body)
        hits = result["hits"]["hits"]
        return hits[0]["_source"] if hits else None

    async def search(self, name: str, body: dict[str, Any], *, backward: bool = False) -> Page:
        """One page of a body `paged` built; `backward` when it pages back
        (`last`): the search ran in reverse order, the page is turned round.

        Relay's rule for the other direction's flag (hasNextPage of a backward
        page, hasPreviousPage of a forward one) allows false where finding out
        would cost another search; it is false."""
        size = body["size"] - 1
        result = await self.client.search(index=self.alias(name), body=body)
        hits = result["hits"]["hits"]
        page = hits[:size]
        more = len(hits) > size
        if backward:
            page.reverse()
        return Page(
            documents=[h["_source"] for h in page],
            cursors=[encode_cursor(h["sort"]) for h in page],
            total=result["hits"]["total"]["value"],
            has_next=more and not backward,
            has_previous=more and backward,
            facets=_facets(result["aggregations"]) if "aggregations" in result else None,
        )

    async def products(
        self,
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
    ) -> Page:
        body = product_search(
            search=search,
            filter=filter,
            sort=sort,
            first=first,
            after=after,
            last=last,
            before=before,
            facets=facets,
            scope=scope,
        )
        return await self.search("products", body, backward=_backward(last, before))

    async def orders(
        self,
        *,
        filter: OrderFilter | None = None,
        sort: OrderSort | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        scope: Scope = EVERY_ROW,
    ) -> Page:
        body = order_search(
            filter=filter,
            sort=sort,
            first=first,
            after=after,
            last=last,
            before=before,
            scope=scope,
        )
        return await self.search("orders", body, backward=_backward(last, before))

    async def customers(
        self,
        *,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        scope: Scope = EVERY_ROW,
    ) -> Page:
        body = customer_search(
            search=search, first=first, after=after, last=last, before=before, scope=scope
        )
        return await self.search("customers", body, backward=_backward(last, before))

    async def suggest_products(
        self, prefix: str, size: int = 10, scope: Scope = EVERY_ROW
    ) -> list[dict[str, Any]]:
        result = await self.client.search(
            index=self.alias("products"), body=product_suggest(prefix, size, scope)
        )
        return [hit["_source"] for hit in result["hits"]["hits"]]

    async def reached(self, names: list[str]) -> int:
        """The position every one of these projections has applied and made searchable."""
        return await self.checkpoints.reached(names)

    async def wait_for(self, position: int, names: list[str], timeout: float) -> Staleness | None:
        """Wait until the projections reach `position`; None when they did, else how far off.

        Returns after `timeout` at the latest, holding no database connection while
        it waits; at once when `position` is beyond the outbox head. Raises
        WriteDatabaseUnavailable when the bound passed with the checkpoints unreadable.
        """
        waited = await self.progress.wait(position, names, timeout)
        if waited is None:
            return None
        return Staleness(position, waited.reached, waited.beyond_head)


def _backward(last: int | None, before: str | None) -> bool:
    # As `paging` decides; the builder has already refused every mix of directions.
    return last is not None or bool(before)


def _facets(aggregations: dict[str, Any]) -> ProductFacetCounts:
    """The aggregations `product_facets` asked for, typed. A price bucket is
    matched by its bounds (numbers), never by the key text Elasticsearch makes."""
    prices = {
        (_bound(b.get("from")), _bound(b.get("to"))): int(b["doc_count"])
        for b in aggregations["price"]["values"]["buckets"]
    }
    return ProductFacetCounts(
        categories=_terms(aggregations["categories"]),
        tags=_terms(aggregations["tags"]),
        prices=[
            PriceBucket(min=low, max=high, count=prices.get((low, high), 0))
            for low, high in PRICE_BUCKETS
        ],
        in_stock=int(aggregations["in_stock"]["values"]["doc_count"]),
    )


def _terms(aggregation: dict[str, Any]) -> list[tuple[str, int]]:
    return [(str(b["key"]), int(b["doc_count"])) for b in aggregation["values"]["buckets"]]


def _bound(value: float | None) -> int | None:
    # A range bucket's bounds come back as doubles (1000.0); prices are whole minor units.
    return None if value is None else int(value)
