"""The progress workers publish in Elasticsearch (readmodel/published.py), and a
query node that knows the read side from it alone, never the write database."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from api.bootstrap import Bicameral, build
from api.settings import Settings
from domain import commands as c
from readmodel.published import (
    ProgressPublisher,
    Published,
    ensure_progress_index,
    progress_index,
    write_published,
)
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

# Nothing listens there: a query node must never need it.
NO_DATABASE = "postgresql+asyncpg://bicameral@127.0.0.1:9/nowhere"


async def _product(app: Bicameral, sku: str) -> int:
    created = c.CreateProduct(sku=sku, name=f"Product {sku}", price=1000, currency="EUR")
    position = (await app.commands.execute(created, actor=SYSTEM)).position
    assert position is not None
    return position


async def _published_position(app: Bicameral, name: str) -> int:
    found = await app.published.read()
    return found[name].position if name in found else 0


async def _until(check: Callable[[], Awaitable[bool]], deadline: float = 20.0) -> None:
    """Polls `check` until it answers true (the deadline only detects a hang)."""
    async with asyncio.timeout(deadline):
        while not await check():
            await asyncio.sleep(0.05)


@pytest.fixture
async def query_node(app: Bicameral) -> AsyncIterator[Bicameral]:
    """A query node on `app`'s indexes, with a write database that does not exist."""
    node = build(dataclasses.replace(app.settings, database_url=NO_DATABASE, node_role="query"))
    await node.start()
    yield node
    await node.stop()


async def test_the_published_position_is_the_checkpoint_reached_and_never_goes_backward(
    app: Bicameral,
) -> None:
    head = await _product(app, "PUB-1")
    await app.worker.run_until_caught_up()

    published = {p.name: p for p in await app.publisher.publish()}
    assert published["products"].position == await app.checkpoints.reached(["products"]) == head
    assert await _published_position(app, "products") == head
    assert (await app.published.read())["products"].head == head

    # An older figure (a slower worker, a rebuild's reset checkpoint) is refused quietly.
    older = dataclasses.replace(published["products"], position=head - 1, head=head - 1)
    await write_published(app.search, app.settings.index_prefix, [older])
    await app.checkpoints.reset("products", 0, datetime.now(UTC))
    await app.publisher.publish()
    assert await _published_position(app, "products") == head

    # An equal one is taken: the head and the lag keep moving while a read model is stuck.
    newer_head = dataclasses.replace(published["products"], head=head + 5)
    await write_published(app.search, app.settings.index_prefix, [newer_head])
    assert (await app.published.read())["products"].head == head + 5


async def test_a_crash_between_the_advance_and_the_publish_heals_at_the_next_sweep(
    app: Bicameral,
) -> None:
    # The checkpoint advances while no publisher runs: a worker that died right after.
    head = await _product(app, "PUB-2")
    await app.worker.run_until_caught_up()
    assert await app.checkpoints.reached(["products"]) == head
    assert await _published_position(app, "products") == 0

    # The next worker's publisher is never poked: only its sweep can heal it.
    sweeper = ProgressPublisher(
        app.search,
        app.engine,
        app.read_models,
        index_prefix=app.settings.index_prefix,
        owner="next-worker",
        interval=0.1,
    )
    sweeper.start()
    try:
        await _until(lambda: _position_is(app, "products", head))
    finally:
        await sweeper.stop()
    assert (await app.published.read())["products"].owner == "next-worker"


async def _position_is(app: Bicameral, name: str, position: int) -> bool:
    return await _published_position(app, name) == position


async def test_the_worker_publishes_as_soon_as_its_listeners_hear_of_an_advance(
    app: Bicameral,
) -> None:
    # A sweep an hour away: only the listener's poke can publish in time.
    app.publisher.interval = 3600
    app.publisher.start()
    head = await _product(app, "PUB-3")
    await app.worker.run_until_caught_up()
    await _until(lambda: _position_is(app, "products", head))


async def test_a_publisher_whose_elasticsearch_fails_keeps_going_and_the_feed_too(
    app: Bicameral,
) -> None:
    unreachable = build(
        dataclasses.replace(app.settings, elasticsearch_url="http://127.0.0.1:9")
    ).search
    failing = ProgressPublisher(
        unreachable,
        app.engine,
        app.read_models,
        index_prefix=app.settings.index_prefix,
        owner="failing",
        interval=0.05,
    )
    app.worker.listeners.append(failing.applied)
    failing.start()
    try:
        head = await _product(app, "PUB-4")
        await app.worker.run_until_caught_up()
        assert await app.checkpoints.reached(["products"]) == head
        await _until(lambda: _failing(failing))
        assert failing._task is not None and not failing._task.done()
    finally:
        await failing.stop()
        await unreachable.close()


async def _failing(publisher: ProgressPublisher) -> bool:
    return publisher.failing


async def test_a_query_node_answers_tokens_lag_and_readiness_without_the_write_database(
    app: Bicameral, query_node: Bicameral
) -> None:
    head = await _product(app, "PUB-5")
    await app.worker.run_until_caught_up()
    await app.publisher.publish()

    assert await query_node.readiness() == {}
    assert await query_node.reader.wait_for(head, ["products"], timeout=10) is None
    assert await query_node.quarantine.at(head, ["products"]) == []
    assert await query_node.quarantine.counts() == {}
    lags = {lag.name: lag for lag in await query_node.lag()}
    assert set(lags) == set(app.read_models)
    assert lags["products"].position == head
    assert lags["products"].lag_events == 0
    assert lags["products"].owner == app.worker.owner

    # A position not yet published waits its bound and answers stale, never early.
    stale = await query_node.reader.wait_for(head + 1, ["products"], timeout=0.3)
    assert stale is not None and stale.reached == head and not stale.beyond_head


async def test_a_query_node_counts_the_lag_from_what_was_published(
    app: Bicameral, query_node: Bicameral
) -> None:
    head = await _product(app, "PUB-6")
    figure = Published("orders", head - 1, head, 2.0, 0, "w", datetime.now(UTC))
    await write_published(app.search, app.settings.index_prefix, [figure])

    lags = {lag.name: lag for lag in await query_node.lag()}
    quarantined = dataclasses.replace(figure, position=head, quarantined=2)
    await write_published(app.search, app.settings.index_prefix, [quarantined])

    assert await query_node.quarantine.counts() == {"orders": 2}
    assert lags["orders"].lag_events == 1
    assert lags["orders"].lag_seconds >= 2.0
    assert (lags["customers"].position, lags["customers"].head) == (0, 0)  # none published


async def test_readiness_is_per_role(app: Bicameral, query_node: Bicameral) -> None:
    command_node = build(
        dataclasses.replace(
            app.settings, elasticsearch_url="http://127.0.0.1:9", node_role="command"
        )
    )
    await command_node.start()
    try:
        assert await command_node.readiness() == {}  # no Elasticsearch needed
    finally:
        await command_node.stop()

    search_gone = build(
        dataclasses.replace(query_node.settings, elasticsearch_url="http://127.0.0.1:9")
    )
    try:
        assert set(await search_gone.readiness()) == {"elasticsearch"}
    finally:
        await search_gone.stop()


def test_a_query_node_never_embeds_a_worker() -> None:
    assert not Settings(node_role="query", embedded_worker=True).runs_embedded_worker


async def test_a_read_model_started_afresh_forgets_the_progress_another_database_published(
    app: Bicameral,
) -> None:
    # Left behind by a write database that is gone (a wiped SQLite file, say).
    gone = Published("customers", 7, 7, 0.0, 0, "gone", datetime.now(UTC))
    await write_published(app.search, app.settings.index_prefix, [gone])
    assert await _published_position(app, "customers") == 7

    await app.worker.run_until_caught_up()  # its first cycle readies Elasticsearch
    await app.publisher.publish()

    # Deleted; its new, lower position waits out the deleted version (safe: 0).
    assert await _published_position(app, "customers") == 0


async def test_the_progress_index_takes_the_replicas_of_the_settings_when_made_and_after(
    app: Bicameral,
) -> None:
    # Replicas follow ELASTICSEARCH_REPLICAS, so losing the node that holds the
    # progress does not take query nodes out of rotation (docs/elasticsearch.md).
    prefix = app.settings.index_prefix
    physical = f"{progress_index(prefix)}-1"

    async def replicas() -> str:
        found = await app.search.indices.get_settings(index=physical)
        return str(found[physical]["settings"]["index"]["number_of_replicas"])

    await ensure_progress_index(app.search, prefix, replicas=1)  # one node: yellow, fine
    assert await replicas() == "1"
    await ensure_progress_index(app.search, prefix, replicas=0)
    assert await replicas() == "0"
