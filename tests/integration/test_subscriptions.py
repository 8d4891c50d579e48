"""Subscriptions in process, on both databases: order, resume, filters, slow consumers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.bootstrap import Bicameral, build
from api.context import Context
from api.schema import build_schema
from api.settings import Settings
from domain import commands as c
from tests.identities import ADMIN
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()


@pytest.fixture
async def live(settings: Settings, engine: object) -> AsyncIterator[Bicameral]:
    """An API process with its worker and its change hub running."""
    app = build(dataclasses.replace(settings, feed_poll_interval=0.2), embedded_worker=True)
    await app.start()
    yield app
    await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
    await app.stop()


async def subscribe(app: Bicameral, query: str, **variables: Any) -> AsyncIterator[Any]:
    stream = await SCHEMA.subscribe(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert not hasattr(stream, "errors"), stream
    return stream  # type: ignore[return-value]


async def take(stream: Any, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for result in stream:
            assert result.errors is None, result.errors
            got.append(next(iter(result.data.values())))
            if len(got) == n:
                break
    return got


async def create(app: Bicameral, sku: str, **extra: Any) -> Any:
    outcome = await app.commands.execute(
        c.CreateProduct(sku=sku, name=f"Product {sku}", price=100, currency="EUR", **extra),
        actor=SYSTEM,
    )
    app.committed()
    return outcome


CHANGES = """subscription($after: String, $types: [EntityType!]) {
  changes(types: $types, after: $after) { entityType id version position kind }
}"""


async def test_a_subscriber_hears_each_change_after_it_is_searchable(live: Bicameral) -> None:
    stream = await subscribe(
        live,
        "subscription { changes { entityType id position kind product { sku price { amount } } } }",
    )
    first = asyncio.ensure_future(take(stream, 2))
    await asyncio.sleep(0.3)  # the subscription is registered once the generator starts
    created = await create(live, "SUB-1", initial_stock=2)

    notes = await first
    await stream.aclose()

    assert [n["kind"] for n in notes] == ["ProductCreated", "StockReceived"]
    assert {n["id"] for n in notes} == {created.snapshot["id"]}
    assert int(notes[-1]["position"]) == created.position
    assert notes[-1]["product"] == {"sku": "SUB-1", "price": {"amount": 100}}


async def test_resuming_after_a_token_replays_what_was_missed_exactly_once(
    live: Bicameral,
) -> None:
    await create(live, "RES-0")
    await live.worker.run_until_caught_up()
    stream = await subscribe(live, CHANGES, after="0")
    seen = await take(stream, 1)
    await stream.aclose()
    token = seen[-1]["position"]

    # Missed while disconnected:
    missed = [await create(live, f"RES-{i}") for i in range(1, 6)]

    stream = await subscribe(live, CHANGES, after=token)
    later = asyncio.ensure_future(take(stream, 7))
    await asyncio.sleep(0.3)
    live_ones = [await create(live, f"RES-{i}") for i in range(6, 8)]
    got = await later
    await stream.aclose()

    positions = [int(n["position"]) for n in got]
    assert positions == sorted(set(positions))
    assert positions[0] == int(token) + 1
    assert [n["id"] for n in got] == [o.snapshot["id"] for o in missed + live_ones]


async def test_orders_of_customer_hears_only_that_customers_orders(live: Bicameral) -> None:
    await create(live, "ORD-1", initial_stock=10)
    ann = (
        await live.commands.execute(c.RegisterCustomer("a@example.com", "Ann"), actor=SYSTEM)
    ).snapshot
    bob = (
        await live.commands.execute(c.RegisterCustomer("b@example.com", "Bob"), actor=SYSTEM)
    ).snapshot
    stream = await subscribe(
        live,
        "subscription($id: ID!) { ordersOfCustomer(customerId: $id) { id kind order { status } } }",
        id=ann["id"],
    )
    heard = asyncio.ensure_future(take(stream, 2))
    await asyncio.sleep(0.3)
    line = (c.OrderLineRequest("ORD-1", 1),)
    await live.commands.execute(c.PlaceOrder(bob["id"], line), actor=SYSTEM)
    mine = await live.commands.execute(c.PlaceOrder(ann["id"], line), actor=SYSTEM)
    await live.commands.execute(c.PayOrder(mine.snapshot["id"]), actor=SYSTEM)
    live.committed()

    notes = await heard
    await stream.aclose()
    assert [(n["id"], n["kind"]) for n in notes] == [
        (mine.snapshot["id"], "OrderPlaced"),
        (mine.snapshot["id"], "OrderPaid"),
    ]
    assert notes[-1]["order"] == {"status": "PAID"}


async def test_a_subscriber_that_falls_behind_is_closed_with_its_resume_point(
    settings: Settings, engine: object
) -> None:
    app = build(
        dataclasses.replace(settings, subscriber_queue_size=3, feed_poll_interval=0.2),
        embedded_worker=True,
    )
    await app.start()
    try:
        stream = await subscribe(app, CHANGES)
        # Start the subscription, then stop reading while ten changes arrive.
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)
        for i in range(10):
            await create(app, f"SLOW-{i}")
        await app.worker.run_until_caught_up()
        await app.hub.pump()
        results = [await first]
        async with asyncio.timeout(10):
            async for result in stream:
                results.append(result)
                if result.errors:
                    break
        await stream.aclose()
        errors = results[-1].errors
        assert errors is not None
        assert errors[0].extensions["code"] == "SUBSCRIBER_FELL_BEHIND"
        assert "resume with after" in errors[0].message
        assert not app.hub.subscribers
    finally:
        await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
        await app.stop()


async def test_subscribe_and_disconnect_cycles_leave_nothing_behind(live: Bicameral) -> None:
    tasks_before = set(asyncio.all_tasks())
    for _ in range(200):
        stream = await subscribe(live, CHANGES)
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await stream.aclose()
    await asyncio.sleep(0.1)
    assert not live.hub.subscribers
    # Measured, not assumed: no task was left over by the 200 subscriptions. (The
    # app's own background tasks may wake and finish meanwhile; they are not new.)
    leftover = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    assert [t.get_coro() for t in leftover] == []
