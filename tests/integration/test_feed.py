"""The change feed against real Elasticsearch, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from api.bootstrap import Bicameral, build
from domain import commands as c
from readmodel.bulk import BulkError, BulkWriter
from readmodel.feed import Applied, FeedWorker
from readmodel.projections import ProductsProjection, default_projections
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.migrate import migrate

pytestmark = pytest.mark.elasticsearch


async def _product(app: Bicameral, sku: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": f"Product {sku}", "price": 1000, "currency": "EUR"}
    fields.update(extra)
    return (await app.commands.execute(c.CreateProduct(sku=sku, **fields), actor=SYSTEM)).snapshot


async def _documents(app: Bicameral, name: str) -> dict[str, dict[str, Any]]:
    alias = f"{app.settings.index_prefix}-{name}"
    await app.search.indices.refresh(index=alias)
    found = await app.search.search(index=alias, size=1000, version=True, query={"match_all": {}})
    return {h["_id"]: {"_version": h["_version"], **h["_source"]} for h in found["hits"]["hits"]}


def _worker(app: Bicameral, **options: Any) -> FeedWorker:
    """Another worker over the app's databases, with `options` for FeedWorker."""
    return FeedWorker(
        app.engine,
        app.search,
        default_projections(),
        index_prefix=app.settings.index_prefix,
        **options,
    )


async def _head(app: Bicameral) -> int:
    async with app.engine.connect() as conn:
        return (await outbox.head(conn))[0]


async def test_a_created_product_is_searchable_once_the_worker_has_run(app: Bicameral) -> None:
    created = await _product(app, "KET-1", name="Stovetop kettle", initial_stock=4, tags=("tea",))

    await app.worker.run_until_caught_up()

    doc = await app.reader.get("products", created["id"])
    assert doc is not None
    assert (doc["sku"], doc["name"], doc["on_hand"], doc["in_stock"]) == (
        "KET-1",
        "Stovetop kettle",
        4,
        True,
    )
    page = await app.reader.products(search="kettle")
    assert [d["id"] for d in page.documents] == [created["id"]]


async def test_the_document_carries_the_newest_position_as_its_version(app: Bicameral) -> None:
    created = await _product(app, "KET-2")
    changed = await app.commands.execute(c.ChangePrice(created["id"], 1500), actor=SYSTEM)

    await app.worker.run_until_caught_up()

    docs = await _documents(app, "products")
    assert docs[created["id"]]["_version"] == changed.position
    assert docs[created["id"]]["price"] == 1500


async def test_replaying_the_whole_feed_from_zero_changes_no_document(app: Bicameral) -> None:
    customer = await app.commands.execute(
        c.RegisterCustomer("ann@example.com", "Ann"), actor=SYSTEM
    )
    for i in range(5):
        await _product(app, f"SKU-{i}", initial_stock=10)
    order = await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("SKU-1", 2),)), actor=SYSTEM
    )
    await app.commands.execute(c.PayOrder(order.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    before = {name: await _documents(app, name) for name in ("products", "orders", "customers")}

    for projection in app.worker.projections:
        await app.checkpoints.reset(projection.name, 0, datetime.now(UTC))
    await app.worker.run_until_caught_up()

    after = {name: await _documents(app, name) for name in ("products", "orders", "customers")}
    assert after == before
    assert before["customers"][customer.snapshot["id"]]["total_spent"] == 2000


async def test_an_older_or_shuffled_batch_never_rolls_a_document_back(app: Bicameral) -> None:
    created = await _product(app, "OLD-1")
    for price in (1100, 1200, 1300):
        await app.commands.execute(c.ChangePrice(created["id"], price), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    latest = (await _documents(app, "products"))[created["id"]]

    async with app.engine.connect() as conn:
        events = await outbox.read_after(conn, 0, 100)
        projection = ProductsProjection()
        writer = BulkWriter(app.search)
        alias = f"{app.settings.index_prefix}-products"
        shuffled = events[:]
        random.Random(7).shuffle(shuffled)
        # Each event alone, oldest first, then the shuffled lot, then duplicates.
        for batch in [*([e] for e in events), shuffled, events + events]:
            await writer.write(alias, await projection.project(conn, batch))

    assert (await _documents(app, "products"))[created["id"]] == latest


async def test_erasing_a_customer_anonymises_them_and_every_order_of_theirs(
    app: Bicameral,
) -> None:
    await _product(app, "ERA-1", initial_stock=5)
    customer = await app.commands.execute(
        c.RegisterCustomer("bob@example.com", "Bob Stone"), actor=SYSTEM
    )
    customer_id = customer.snapshot["id"]
    orders = [
        await app.commands.execute(
            c.PlaceOrder(customer_id, (c.OrderLineRequest("ERA-1", 1),)), actor=SYSTEM
        )
        for _ in range(2)
    ]
    await app.worker.run_until_caught_up()
    assert (await app.reader.get("orders", orders[0].snapshot["id"]) or {})["customer"][
        "email"
    ] == "bob@example.com"

    await app.commands.execute(c.EraseCustomer(customer_id), actor=SYSTEM)
    await app.worker.run_until_caught_up()

    person = await app.reader.get("customers", customer_id)
    assert person is not None
    assert (person["name"], person["email"], person["erased"]) == (None, None, True)
    for order in orders:
        doc = await app.reader.get("orders", order.snapshot["id"])
        assert doc is not None
        assert doc["customer"] == {
            "id": customer_id,
            "name": None,
            "email": None,
            "erased": True,
        }
    everything = str(await _documents(app, "orders")) + str(await _documents(app, "customers"))
    assert "bob@example.com" not in everything and "Bob Stone" not in everything


async def test_orders_embed_the_customer_and_product_names(app: Bicameral) -> None:
    product = await _product(app, "EMB-1", name="Blue mug", initial_stock=3)
    customer = await app.commands.execute(c.RegisterCustomer("cy@example.com", "Cy"), actor=SYSTEM)
    order = await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("EMB-1", 2),)), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    doc = await app.reader.get("orders", order.snapshot["id"])
    assert doc is not None
    assert doc["customer"]["name"] == "Cy"
    assert doc["lines"][0]["product_name"] == "Blue mug"
    assert doc["total"] == 2000

    await app.commands.execute(c.UpdateProduct(product["id"], name="Red mug"), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    doc = await app.reader.get("orders", order.snapshot["id"])
    assert doc is not None and doc["lines"][0]["product_name"] == "Red mug"


async def test_stock_and_sales_reach_the_product_document(app: Bicameral) -> None:
    product = await _product(app, "STK-1", initial_stock=3)
    customer = await app.commands.execute(c.RegisterCustomer("di@example.com", "Di"), actor=SYSTEM)
    order = await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("STK-1", 3),)), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    doc = await app.reader.get("products", product["id"])
    assert doc is not None
    assert (doc["on_hand"], doc["reserved"], doc["available"], doc["in_stock"]) == (3, 3, 0, False)

    await app.commands.execute(c.PayOrder(order.snapshot["id"]), actor=SYSTEM)
    await app.commands.execute(c.ShipOrder(order.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    doc = await app.reader.get("products", product["id"])
    assert doc is not None
    assert (doc["on_hand"], doc["reserved"], doc["units_sold"]) == (0, 0, 3)


async def test_the_checkpoint_stays_put_while_elasticsearch_cannot_take_the_batch(
    app: Bicameral, unused_tcp_port: int
) -> None:
    await _product(app, "DOWN-1")
    # A real client to an address where nothing listens: every bulk call fails to connect.
    unreachable = AsyncElasticsearch(f"http://127.0.0.1:{unused_tcp_port}", max_retries=0)
    try:
        broken = FeedWorker(
            app.engine,
            unreachable,
            default_projections(),
            index_prefix=app.settings.index_prefix,
        )
        broken._indexes_ready = True  # the indexes exist; only the bulk call is in question
        broken.writer = BulkWriter(unreachable, max_attempts=2, base_delay=0.01)
        with pytest.raises(BulkError):
            await broken.run_once()
        assert (await app.checkpoints.get("products")).position == 0
        await app.checkpoints.release(["products"], broken.owner)
    finally:
        await unreachable.close()

    await app.worker.run_until_caught_up()
    assert (await app.checkpoints.get("products")).position > 0
    assert len(await _documents(app, "products")) == 1


async def test_a_second_worker_takes_over_a_projection_once_the_owners_lease_expires(
    app: Bicameral,
) -> None:
    await _product(app, "LEASE-1")
    clock = [datetime.now(UTC)]

    def worker(name: str) -> FeedWorker:
        return _worker(app, lease=timedelta(seconds=5), owner=name, clock=lambda: clock[0])

    first, second = worker("first"), worker("second")
    assert await first.run_once() > 0
    await _product(app, "LEASE-2")
    # The owner "dies": it never runs again and never releases its leases.
    assert await second.run_once() == 0
    clock[0] += timedelta(seconds=6)
    assert await second.run_once() > 0
    assert {(await app.checkpoints.get(p)).owner for p in ("products", "orders")} == {"second"}
    assert len(await _documents(app, "products")) == 2


async def test_listeners_hear_each_applied_batch_after_it_is_searchable(app: Bicameral) -> None:
    heard: list[tuple[str, int, int]] = []

    async def listener(applied: Applied) -> None:
        alias = f"{app.settings.index_prefix}-{applied.projection}"
        count = (await app.search.count(index=alias))["count"]
        heard.append((applied.projection, applied.position, count))

    app.worker.listeners.append(listener)
    created = await app.commands.execute(
        c.CreateProduct(sku="HEAR-1", name="Heard", price=100, currency="EUR"), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()

    assert ("products", created.position, 1) in heard


async def test_documents_of_another_write_database_are_not_served(
    app: Bicameral, tmp_path: Path
) -> None:
    # The read side holds documents projected from another write database: a wiped
    # SQLite file beside an Elasticsearch node that kept its data, say.
    await _product(app, "OLD-DB-1")
    await app.worker.run_until_caught_up()
    assert len(await _documents(app, "products")) == 1
    other_url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    other = build(dataclasses.replace(app.settings, database_url=other_url))
    try:
        await migrate(other.engine)
        await other.start(subscriptions=False)
        created = await other.commands.execute(
            c.CreateProduct(sku="NEW-DB-1", name="New", price=1, currency="EUR"), actor=SYSTEM
        )

        await other.worker.run_until_caught_up()

        docs = await _documents(other, "products")
        assert list(docs) == [created.snapshot["id"]]
    finally:
        await other.stop()


async def test_one_projection_replays_while_the_others_skip_what_they_have_applied(
    app: Bicameral,
) -> None:
    customer = await app.commands.execute(c.RegisterCustomer("bo@example.com", "Bo"), actor=SYSTEM)
    await _product(app, "REPLAY-1")
    await app.worker.run_until_caught_up()
    head = await _head(app)
    heard: list[tuple[str, int]] = []

    async def listener(applied: Applied) -> None:
        heard.append((applied.projection, len(applied.events)))

    app.worker.listeners.append(listener)
    await app.checkpoints.reset("customers", 0, datetime.now(UTC))
    await app.worker.run_until_caught_up()

    # Only the projection that went back heard of a batch, with its own events.
    assert heard == [("customers", 1)]
    assert {(await app.checkpoints.get(n)).position for n in ("products", "customers")} == {head}
    assert list(await _documents(app, "customers")) == [customer.snapshot["id"]]


async def test_a_backlog_is_read_in_growing_batches_up_to_the_catch_up_limit(
    app: Bicameral,
) -> None:
    for i in range(66):
        await _product(app, f"GROW-{i}")  # one event each
    worker = _worker(app, batch_size=4, catch_up_factor=4)

    read = [await worker.run_once() for _ in range(7)]

    # 4, then doubling while batches come back full (capped at 4 x 4); the rest; nothing.
    assert read == [4, 8, 16, 16, 16, 6, 0]
    assert (await app.checkpoints.get("products")).position == await _head(app)
    assert len(await _documents(app, "products")) == 66


async def test_a_lease_is_renewed_once_half_of_it_is_spent_not_on_every_cycle(
    app: Bicameral,
) -> None:
    clock = [datetime.now(UTC)]
    worker = _worker(app, lease=timedelta(seconds=10), owner="renewer", clock=lambda: clock[0])
    await worker.run_once()
    taken = (await app.checkpoints.get("products")).lease_until
    assert taken == clock[0] + timedelta(seconds=10)

    clock[0] += timedelta(seconds=4)  # 6 s of 10 left: no renewal
    await _product(app, "RENEW-1")
    assert await worker.run_once() > 0
    assert (await app.checkpoints.get("products")).lease_until == taken

    clock[0] += timedelta(seconds=2)  # 4 s left: renewed
    await worker.run_once()
    assert (await app.checkpoints.get("products")).lease_until == clock[0] + timedelta(seconds=10)


async def test_a_batch_read_ahead_is_dropped_when_a_checkpoint_moved_meanwhile(
    app: Bicameral,
) -> None:
    for i in range(12):
        await _product(app, f"AHEAD-{i}")  # one event each
    async with app.engine.connect() as conn:
        positions = [e.position for e in await outbox.read_after(conn, 0, 100)]
    worker = _worker(app, batch_size=4)
    assert await worker.run_once() == 4  # a full batch: the next 8 are read meanwhile

    # A replay of one read model resets its checkpoint while the next batch was read
    # from where all three stood; that batch would skip the products from 1 to 4.
    await app.checkpoints.reset("products", 0, datetime.now(UTC))
    assert await worker.run_once() == 8

    assert {(await app.checkpoints.get(n)).position for n in ("products", "orders")} == {
        positions[7]
    }
    await worker.run_until_caught_up()
    assert len(await _documents(app, "products")) == 12
