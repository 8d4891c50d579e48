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
    OrderFilter,
    OrderSort,
    ProductFilter,
    ProductSort,
    Scope,
    customer_search,
    encode_cursor,
    lookup,
    order_search,
    product_by_sku,
    product_search,
    product_suggest,
    stored_id,
    stored_sku,
)

__all__ = ["Page", "Reader", "Staleness"]


@dataclass(frozen=True)
class Page:
    documents: list[dict[str, Any]]
    cursors: list[str]
    total: int
    has_next: bool
    # Facet name -> [(value, count)]; only when asked for.
    facets: dict[str, list[tuple[Any, int]]] | None = None


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

    async def search(self, name: str, body: dict[str, Any]) -> Page:
        size = body["size"] - 1
        result = await self.client.search(index=self.alias(name), body=body)
        hits = result["hits"]["hits"]
        page = hits[:size]
        return Page(
            documents=[h["_source"] for h in page],
            cursors=[encode_cursor(h["sort"]) for h in page],
            total=result["hits"]["total"]["value"],
            has_next=len(hits) > size,
            facets=_facets(result["aggregations"]) if "aggregations" in result else None,
        )

    async def products(
        self,
        *,
        search: str | None = None,
        filter: ProductFilter | None = None,
        sort: ProductSort | None = None,
        first: int = 20,
        after: str | None = None,
        facets: bool = False,
        scope: Scope = EVERY_ROW,
    ) -> Page:
        body = product_search(
            search=search,
            filter=filter,
            sort=sort,
            first=first,
            after=after,
            facets=facets,
            scope=scope,
        )
        return await self.search("products", body)

    async def orders(
        self,
        *,
        filter: OrderFilter | None = None,
        sort: OrderSort | None = None,
        first: int = 20,
        after: str | None = None,
        scope: Scope = EVERY_ROW,
    ) -> Page:
        body = order_search(filter=filter, sort=sort, first=first, after=after, scope=scope)
        return await self.search("orders", body)

    async def customers(
        self,
        *,
        search: str | None = None,
        first: int = 20,
        after: str | None = None,
        scope: Scope = EVERY_ROW,
    ) -> Page:
        return await self.search(
            "customers", customer_search(search=search, first=first, after=after, scope=scope)
        )

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


def _facets(aggregations: dict[str, Any]) -> dict[str, list[tuple[Any, int]]]:
    facets: dict[str, list[tuple[Any, int]]] = {}
    for name, agg in aggregations.items():
        values = agg["values"]
        if "buckets" in values:
            facets[name] = [(b.get("key"), int(b["doc_count"])) for b in values["buckets"]]
        else:  # a single filter bucket: one count
            facets[name] = [(True, int(values["doc_count"]))]
    return facets
