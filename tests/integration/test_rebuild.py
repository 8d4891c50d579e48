"""Rebuilding a read model against real Elasticsearch, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.app import create_app
from api.bootstrap import Bicameral
from domain import commands as c
from readmodel.bulk import BulkError, BulkWriter
from readmodel.indexes import INDEXES, PRODUCTS
from readmodel.projections import Action, ProductsProjection
from readmodel.quarantine import RetryResult
from readmodel.rebuild import Progress, RebuildError, RebuildResult, abandon, rebuild
from readmodel.setup import alias_state, physical_indexes
from writemodel.access import SYSTEM
from writemodel.tables import products

pytestmark = pytest.mark.elasticsearch

# A tag Elasticsearch refuses for itself: Lucene takes no term over 32,766 bytes.
IMMENSE = "x" * 40_000


async def _product(app: Bicameral, sku: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": f"Product {sku}", "price": 1000, "currency": "EUR"}
    fields.update(extra)
    return (await app.commands.execute(c.CreateProduct(sku=sku, **fields), actor=SYSTEM)).snapshot


async def _rebuild(
    app: Bicameral,
    name: str = "products",
    *,
    progress: Progress | None = None,
    page_size: int = 1000,
    retire_after: float = 0.1,
    max_refused: int = 1000,
) -> RebuildResult:
    return await rebuild(
        name,
        engine=app.engine,
        client=app.search,
        prefix=app.settings.index_prefix,
        worker=app.worker,
        checkpoints=app.checkpoints,
        progress=progress,
        page_size=page_size,
        catch_up_timeout=60.0,
        retire_after=retire_after,
        max_refused=max_refused,
    )


async def _set_tags(app: Bicameral, product_id: str, tags: list[str]) -> None:
    """Change a product's row behind the domain's back (no event, so no feed write):
    past every text rule, as a bad migration or a hand edit would."""
    async with app.engine.begin() as conn:
        await conn.execute(update(products).where(products.c.id == product_id).values(tags=tags))


async def _retry_all(app: Bicameral) -> RetryResult:
    return await app.worker.quarantine.retry(
        None,
        projections=app.worker.projections,
        writer=app.worker.writer,
        prefix=app.settings.index_prefix,
        now=app.now(),
    )


async def _documents(app: Bicameral, index: str) -> dict[str, dict[str, Any]]:
    await app.search.indices.refresh(index=index)
    found = await app.search.search(index=index, size=10_000, version=True, query={"match_all": {}})
    return {h["_id"]: {"_version": h["_version"], **h["_source"]} for h in found["hits"]["hits"]}


async def _prices_in_the_write_database(app: Bicameral) -> dict[str, int]:
    async with app.engine.connect() as conn:
        rows = await conn.execute(select(products.c.id, products.c.price))
        return {row.id: row.price for row in rows}


def _alias(app: Bicameral, name: str = "products") -> str:
    return INDEXES[name].alias(app.settings.index_prefix)


async def _one_index_and_no_rebuild_left(app: Bicameral, name: str, expected: str) -> None:
    state = await alias_state(app.search, app.settings.index_prefix, INDEXES[name])
    assert state.serving == expected
    assert state.building is None
    assert not await app.search.indices.exists_alias(
        name=INDEXES[name].next_alias(app.settings.index_prefix)
    )
    assert await physical_indexes(app.search, app.settings.index_prefix, INDEXES[name]) == [
        expected
    ]


async def test_a_rebuild_swaps_the_alias_to_a_new_index_with_the_same_documents(
    app: Bicameral,
) -> None:
    customer = await app.commands.execute(
        c.RegisterCustomer("eve@example.com", "Eve"), actor=SYSTEM
    )
    for i in range(7):
        await _product(app, f"REB-{i}", initial_stock=10, tags=("tea",))
    order = await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("REB-3", 2),)), actor=SYSTEM
    )
    await app.commands.execute(c.PayOrder(order.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()

    told: list[tuple[int, int]] = []
    for name, index in INDEXES.items():
        old = (await alias_state(app.search, app.settings.index_prefix, index)).serving
        before = await _documents(app, _alias(app, name))
        told.clear()

        result = await _rebuild(app, name, page_size=3, progress=lambda n, t: told.append((n, t)))

        assert (result.old_index, result.resumed) == (old, False)
        assert result.new_index != old
        assert not await app.search.indices.exists(index=str(old))
        await _one_index_and_no_rebuild_left(app, name, result.new_index)
        after = await _documents(app, _alias(app, name))
        assert result.documents == len(before) > 0
        # Told first the total, then after every page of three.
        n = len(before)
        assert told == [(0, n), *((min(k, n), n) for k in range(3, n + 3, 3))]
        assert after.keys() == before.keys()
        for id, doc in before.items():
            # The load knows the state as of the head it read, not each document's last event.
            assert after[id]["_version"] >= doc["_version"]
            assert after[id]["position"] == after[id]["_version"]
            assert {k: v for k, v in after[id].items() if k not in ("_version", "position")} == {
                k: v for k, v in doc.items() if k not in ("_version", "position")
            }


async def test_a_rebuild_under_concurrent_queries_and_writes_loses_nothing(
    app: Bicameral,
) -> None:
    ids = [(await _product(app, f"CON-{i}", price=1000 + i))["id"] for i in range(150)]
    await app.worker.run_until_caught_up()
    alias = _alias(app)
    existing = (await app.search.count(index=alias))["count"]
    assert existing == 150
    worker = asyncio.create_task(app.worker.run())
    rebuilding = asyncio.create_task(_rebuild(app, page_size=20, retire_after=1.0))
    searches, writes_during_rebuild = 0, 0

    async def query() -> None:
        nonlocal searches
        while not rebuilding.done():
            found = await app.search.search(
                index=alias, size=0, track_total_hits=True, query={"match_all": {}}
            )
            assert found["hits"]["total"]["value"] >= existing
            searches += 1
            await asyncio.sleep(0)

    async def write() -> None:
        nonlocal writes_during_rebuild
        rng = random.Random(11)
        n = 0
        while not rebuilding.done() or n < 10:
            ids.append((await _product(app, f"NEW-{n}", price=500))["id"])
            await app.commands.execute(
                c.ChangePrice(rng.choice(ids), rng.randrange(100, 9_999)), actor=SYSTEM
            )
            writes_during_rebuild += not rebuilding.done()
            n += 1

    try:
        result, _, _ = await asyncio.gather(rebuilding, query(), write())
    finally:
        app.worker.stop()
        await worker
    await app.worker.run_until_caught_up()

    assert searches > 0 and writes_during_rebuild > 0  # the three really overlapped
    await _one_index_and_no_rebuild_left(app, "products", result.new_index)
    indexed = await _documents(app, alias)
    prices = await _prices_in_the_write_database(app)
    assert {id: doc["price"] for id, doc in indexed.items()} == prices
    assert len(prices) == len(ids)


async def test_a_changed_mapping_is_detected_and_goes_live_with_the_rebuild(
    app: Bicameral, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await _product(app, "MAP-1")
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    assert not (await alias_state(app.search, prefix, PRODUCTS)).rebuild_due

    changed = dataclasses.replace(
        PRODUCTS, properties={**PRODUCTS.properties, "brand": {"type": "keyword"}}
    )
    monkeypatch.setitem(INDEXES, "products", changed)
    assert changed.digest != PRODUCTS.digest
    assert (await alias_state(app.search, prefix, changed)).rebuild_due

    result = await _rebuild(app)

    state = await alias_state(app.search, prefix, changed)
    assert not state.rebuild_due and state.serving == result.new_index
    assert state.serving_digest == changed.digest
    live = (await app.search.indices.get_mapping(index=_alias(app)))[result.new_index]["mappings"]
    assert live["properties"]["brand"] == {"type": "keyword"}
    assert live["_meta"] == {"digest": changed.digest}
    assert await app.reader.get("products", created["id"]) is not None


async def test_a_rebuild_under_an_unchanged_mapping_gets_a_new_generation(
    app: Bicameral,
) -> None:
    await _product(app, "GEN-1")
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    first = await alias_state(app.search, prefix, PRODUCTS)

    second = await _rebuild(app)
    third = await _rebuild(app)

    assert first.serving == PRODUCTS.physical(prefix, 1)
    assert (second.new_index, third.new_index) == (
        PRODUCTS.physical(prefix, 2),
        PRODUCTS.physical(prefix, 3),
    )
    assert not (await alias_state(app.search, prefix, PRODUCTS)).rebuild_due


async def test_an_interrupted_rebuild_is_resumed_by_the_next_one(app: Bicameral) -> None:
    ids = sorted([(await _product(app, f"RES-{i}"))["id"] for i in range(6)])
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving

    class Interrupted(Exception):
        pass

    def interrupt_after_the_first_page(loaded: int, total: int) -> None:
        if loaded > 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        await _rebuild(app, page_size=2, progress=interrupt_after_the_first_page)

    state = await alias_state(app.search, prefix, PRODUCTS)
    assert state.serving == old and state.building not in (None, old)
    building = str(state.building)
    assert len(await _documents(app, building)) == 2
    # Meanwhile the feed goes on, to both: a document the load has not reached yet.
    await app.commands.execute(c.ChangePrice(ids[-1], 4242), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    assert (await _documents(app, building))[ids[-1]]["price"] == 4242
    assert (await _documents(app, _alias(app)))[ids[-1]]["price"] == 4242

    result = await _rebuild(app, page_size=2)

    assert (result.resumed, result.new_index, result.old_index) == (True, building, old)
    await _one_index_and_no_rebuild_left(app, "products", building)
    indexed = await _documents(app, _alias(app))
    assert {id: doc["price"] for id, doc in indexed.items()} == (
        await _prices_in_the_write_database(app)
    )


async def test_a_cancelled_rebuild_leaves_the_old_index_serving(app: Bicameral) -> None:
    for i in range(6):
        await _product(app, f"CAN-{i}")
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving
    loading = asyncio.Event()

    def note(loaded: int, total: int) -> None:
        loading.set()

    task = asyncio.create_task(_rebuild(app, page_size=1, progress=note))
    await loading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (await alias_state(app.search, prefix, PRODUCTS)).serving == old
    assert (await app.reader.products()).total == 6
    dropped = await abandon(app.search, prefix, "products")
    assert dropped is not None and not await app.search.indices.exists(index=dropped)
    await _one_index_and_no_rebuild_left(app, "products", str(old))
    # With `-next` gone, the feed writes to the alias alone, and creates no index.
    await _product(app, "CAN-6")
    await app.worker.run_until_caught_up()
    assert (await app.reader.products()).total == 7
    await _one_index_and_no_rebuild_left(app, "products", str(old))


async def test_every_projection_counts_the_ids_it_lists(app: Bicameral) -> None:
    async def counted_and_listed() -> dict[str, tuple[int, int]]:
        async with app.engine.connect() as conn:
            return {
                p.name: (await p.count(conn), len(await p.all_ids(conn, "", 10_000)))
                for p in app.worker.projections
            }

    assert set((await counted_and_listed()).values()) == {(0, 0)}
    customer = await app.commands.execute(
        c.RegisterCustomer("cat@example.com", "Cat"), actor=SYSTEM
    )
    for i in range(4):
        await _product(app, f"CNT-{i}", initial_stock=5)
    await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("CNT-1", 1),)), actor=SYSTEM
    )

    assert await counted_and_listed() == {
        "products": (4, 4),
        "orders": (1, 1),
        "customers": (1, 1),
    }


def _rebuild_tasks_left() -> list[asyncio.Task[Any]]:
    """Tasks still running code of readmodel/rebuild.py, such as a page read ahead.

    Not every task started meanwhile: the app's change hub reads on a timer of its own."""
    here = rebuild.__code__.co_filename
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", None) == here
    ]


async def test_a_document_elasticsearch_refuses_is_quarantined_and_the_rebuild_swaps_without_it(
    app: Bicameral,
) -> None:
    ids = sorted([(await _product(app, f"REF-{i}", price=100))["id"] for i in range(6)])
    await app.commands.execute(c.ChangePrice(ids[3], 1000), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving
    # The second page (of two) holds a document Elasticsearch refuses for itself.
    await _set_tags(app, ids[3], [IMMENSE])
    told: list[tuple[int, int]] = []

    result = await _rebuild(app, page_size=2, progress=lambda n, t: told.append((n, t)))

    assert (result.old_index, result.documents, result.quarantined) == (old, 6, 1)
    assert told == [(0, 6), (2, 6), (4, 6), (6, 6)]
    await _one_index_and_no_rebuild_left(app, "products", result.new_index)
    # Every other document is in the new index; the refused one is missing from it.
    assert set(await _documents(app, _alias(app))) == set(ids) - {ids[3]}
    [entry] = await app.worker.quarantine.entries()
    assert (entry.read_model, entry.index_name, entry.document_id) == (
        "products",
        result.new_index,
        ids[3],
    )
    assert (entry.version, entry.positions) == (result.loaded_as_of, [result.loaded_as_of])
    assert entry.active and entry.attempts == 1
    assert entry.error_type == "document_parsing_exception" and "[tags]" in entry.reason
    # The operator sees it where the feed's refusals show.
    assert await app.worker.quarantine.counts() == {"products": 1}
    transport = httpx.ASGITransport(app=create_app(bicameral=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        metrics = (await client.get("/metrics")).text
    assert 'bicameral_quarantined_documents{projection="products"} 1' in metrics

    # Not fixed yet: refused again by the serving index, kept.
    again = await _retry_all(app)
    assert ([e.document_id for e in again.refused], again.cleared) == ([ids[3]], [])
    await _set_tags(app, ids[3], ["mended"])
    done = await _retry_all(app)

    assert ([e.document_id for e in done.cleared], done.refused) == ([ids[3]], [])
    assert await app.worker.quarantine.entries() == []
    doc = await app.reader.get("products", ids[3])
    assert doc is not None and (doc["price"], doc["tags"]) == (1000, ["mended"])
    found = await app.search.search(index=_alias(app), query={"term": {"tags": "mended"}})
    assert [hit["_id"] for hit in found["hits"]["hits"]] == [ids[3]]
    await _one_index_and_no_rebuild_left(app, "products", result.new_index)


async def test_an_entry_whose_document_the_rebuild_writes_is_superseded_at_the_swap(
    app: Bicameral,
) -> None:
    ids = sorted([(await _product(app, f"SUP-{i}"))["id"] for i in range(3)])
    await app.worker.run_until_caught_up()
    # The feed refuses two of them (their rows poisoned, then an event on each)...
    mended, still_bad = ids[0], ids[1]
    for id in (mended, still_bad):
        await _set_tags(app, id, [IMMENSE])
        await app.commands.execute(c.ChangePrice(id, 1500), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    alias = _alias(app)
    assert {(e.document_id, e.index_name) for e in await app.worker.quarantine.entries()} == {
        (mended, alias),
        (still_bad, alias),
    }
    # ... then one row is fixed by hand, with no event to write it again.
    await _set_tags(app, mended, ["mended"])

    result = await _rebuild(app)

    assert result.quarantined == 1
    entries = {(e.document_id, e.index_name): e for e in await app.worker.quarantine.entries()}
    # The new index has the fixed document, newer than the refused write: superseded.
    assert entries[mended, alias].superseded_at is not None
    # The other is missing from the new index too: its entry stays, and one more
    # for the new index says the rebuild refused it as well.
    assert entries[still_bad, alias].active
    assert entries[still_bad, result.new_index].active
    assert set(entries) == {(mended, alias), (still_bad, alias), (still_bad, result.new_index)}
    # Status and /metrics count documents, not entries.
    assert await app.worker.quarantine.counts() == {"products": 1}
    indexed = await _documents(app, alias)
    assert set(indexed) == {mended, ids[2]}
    assert (indexed[mended]["price"], indexed[mended]["tags"]) == (1500, ["mended"])


async def test_a_rebuild_refused_more_documents_than_allowed_does_not_go_live(
    app: Bicameral, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):
        await _product(app, f"MAX-{i}", price=1000)
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving
    # A `price` of one byte: a mapping that refuses every document, not the documents' fault.
    narrow = dataclasses.replace(
        PRODUCTS, properties={**PRODUCTS.properties, "price": {"type": "byte"}}
    )
    monkeypatch.setitem(INDEXES, "products", narrow)
    told: list[tuple[int, int]] = []

    with pytest.raises(RebuildError, match="refused 4 documents of products, more than 3"):
        await _rebuild(app, page_size=2, max_refused=3, progress=lambda n, t: told.append((n, t)))

    assert told == [(0, 6), (2, 6)]
    state = await alias_state(app.search, prefix, narrow)
    assert state.serving == old and state.building not in (None, old)
    assert await app.worker.quarantine.entries() == []
    assert (await app.reader.products()).total == 6


async def test_a_failing_page_write_fails_the_rebuild_and_stops_the_page_read_ahead(
    app: Bicameral, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sorted([(await _product(app, f"FAI-{i}"))["id"] for i in range(6)])
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving
    # The third page's read is held until cancelled, and the second page's bulk
    # request waits for it to be held: the read is in flight when the bulk fails,
    # for a reason that is not the documents' own (a write block: 403), so the
    # load does not go on.
    read_ahead_held, read_ahead = asyncio.Event(), list[str]()
    documents, write = ProductsProjection.documents, BulkWriter.write

    async def held_documents(
        self: ProductsProjection, conn: AsyncConnection, page: list[str]
    ) -> dict[str, dict[str, Any]]:
        if ids[4] in page:
            read_ahead_held.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                read_ahead.append("cancelled")
                raise
        return await documents(self, conn, page)

    async def write_once_blocked(
        self: BulkWriter, index: str, actions: Sequence[Action], **options: Any
    ) -> None:
        if any(action.id == ids[3] for action in actions):
            await read_ahead_held.wait()
            await self.client.indices.put_settings(
                index=index, settings={"index.blocks.write": True}
            )
        await write(self, index, actions, **options)

    monkeypatch.setattr(ProductsProjection, "documents", held_documents)
    monkeypatch.setattr(BulkWriter, "write", write_once_blocked)
    told: list[tuple[int, int]] = []

    with pytest.raises(BulkError) as failed:
        async with asyncio.timeout(30):
            await _rebuild(app, page_size=2, progress=lambda n, t: told.append((n, t)))

    assert "cluster_block_exception" in str(failed.value)
    assert read_ahead == ["cancelled"]
    assert _rebuild_tasks_left() == []
    assert told == [(0, 6), (2, 6)]
    state = await alias_state(app.search, prefix, PRODUCTS)
    assert state.serving == old and state.building not in (None, old)
    # The first page went in; the second was blocked, the third never written.
    assert set(await _documents(app, str(state.building))) == set(ids[:2])
    assert await app.worker.quarantine.entries() == []


async def test_a_failing_page_read_fails_the_rebuild_and_leaves_no_task(
    app: Bicameral, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sorted([(await _product(app, f"RFA-{i}"))["id"] for i in range(6)])
    await app.worker.run_until_caught_up()
    prefix = app.settings.index_prefix
    old = (await alias_state(app.search, prefix, PRODUCTS)).serving

    class ReadFailed(Exception):
        pass

    documents = ProductsProjection.documents

    async def failing_documents(
        self: ProductsProjection, conn: AsyncConnection, page: list[str]
    ) -> dict[str, dict[str, Any]]:
        if ids[4] in page:
            raise ReadFailed
        return await documents(self, conn, page)

    monkeypatch.setattr(ProductsProjection, "documents", failing_documents)
    told: list[tuple[int, int]] = []

    with pytest.raises(ReadFailed):
        await _rebuild(app, page_size=2, progress=lambda n, t: told.append((n, t)))

    assert _rebuild_tasks_left() == []
    assert told == [(0, 6), (2, 6), (4, 6)]
    state = await alias_state(app.search, prefix, PRODUCTS)
    assert state.serving == old and state.building not in (None, old)
    assert set(await _documents(app, str(state.building))) == set(ids[:4])
