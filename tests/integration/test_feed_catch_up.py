"""How the feed worker batches: a backlog refreshed rarely, a trickle applied at once.

On SQLite and PostgreSQL alike, against the real Elasticsearch node. The
products index is set to refresh only when asked (`refresh_interval: -1`), so
a document is searchable only after the worker's own refresh: a checkpoint
ahead of it would show here as a product the checkpoint covers that a search
cannot find.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from api.bootstrap import Bicameral
from domain import commands as c
from readmodel.feed import Applied, FeedWorker
from readmodel.projections import default_projections
from writemodel import outbox
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

# Generous: a hang shows, never a timing.
DEADLINE = 20.0


def _worker(app: Bicameral, **options: Any) -> FeedWorker:
    return FeedWorker(
        app.engine,
        app.search,
        default_projections(),
        index_prefix=app.settings.index_prefix,
        **options,
    )


async def _products(app: Bicameral, prefix: str, count: int) -> list[tuple[int, str]]:
    """(position, id) of `count` new products, one event each."""
    created = []
    for i in range(count):
        result = await app.commands.execute(
            c.CreateProduct(sku=f"{prefix}-{i}", name=f"Product {i}", price=100, currency="EUR"),
            actor=SYSTEM,
        )
        created.append((result.position, result.snapshot["id"]))
    return created


async def _refresh_only_when_asked(app: Bicameral) -> str:
    alias = f"{app.settings.index_prefix}-products"
    await app.worker.run_until_caught_up()  # the indexes exist
    await app.search.indices.put_settings(index=alias, settings={"refresh_interval": "-1"})
    return alias


async def _searchable(app: Bicameral, alias: str, ids: list[str]) -> set[str]:
    """Which of `ids` a search finds now, without refreshing."""
    found = await app.search.search(
        index=alias, size=len(ids) or 1, query={"ids": {"values": ids}}, source=False
    )
    return {hit["_id"] for hit in found["hits"]["hits"]}


async def _head(app: Bicameral) -> int:
    async with app.engine.connect() as conn:
        return (await outbox.head(conn))[0]


async def test_a_checkpoint_never_gets_ahead_of_what_is_searchable_while_a_backlog_is_caught_up(
    app: Bicameral,
) -> None:
    alias = await _refresh_only_when_asked(app)
    await app.worker.release_leases()
    created = await _products(app, "BACKLOG", 40)
    # Batches of 4 growing to 8: with 40 behind, the first batches are a backlog.
    worker = _worker(app, batch_size=4, catch_up_factor=2, refresh_interval=3600)
    heard: list[tuple[int, set[str]]] = []

    async def listener(applied: Applied) -> None:
        if applied.projection == "products":
            covered = [id for position, id in created if position <= applied.position]
            heard.append((len(covered), await _searchable(app, alias, covered)))

    worker.listeners.append(listener)
    checkpoints = []
    while await worker.run_once():
        position = (await app.checkpoints.get("products")).position
        checkpoints.append(position)
        covered = [id for p, id in created if p <= position]
        # Everything the checkpoint covers is searchable, after every cycle.
        assert await _searchable(app, alias, covered) == set(covered)

    # The backlog's batches were written before any checkpoint moved ...
    assert checkpoints[0] < created[0][0]
    # ... and then the whole of it was made searchable and the checkpoint moved to the head.
    assert checkpoints[-1] == await _head(app)
    assert await _searchable(app, alias, [id for _, id in created]) == {id for _, id in created}
    # Listeners heard of each batch once it was searchable, all of it.
    assert heard and all(len(found) == count for count, found in heard)
    assert heard[-1][0] == len(created)


async def test_a_backlog_is_refreshed_at_least_once_per_refresh_interval(
    app: Bicameral,
) -> None:
    alias = await _refresh_only_when_asked(app)
    await app.worker.release_leases()
    created = await _products(app, "INTERVAL", 40)
    # An interval of 0 has passed after every batch: each is refreshed and advanced.
    worker = _worker(app, batch_size=4, catch_up_factor=2, refresh_interval=0)

    assert await worker.run_once() == 4

    assert (await app.checkpoints.get("products")).position == created[3][0]
    assert await _searchable(app, alias, [id for _, id in created[:4]]) == {
        id for _, id in created[:4]
    }


async def test_a_replay_asked_for_during_a_backlog_is_not_skipped(app: Bicameral) -> None:
    before = await _products(app, "REPLAYED", 3)
    await app.worker.run_until_caught_up()
    await app.worker.release_leases()
    await _products(app, "BEHIND", 40)
    worker = _worker(app, batch_size=4, catch_up_factor=2, refresh_interval=3600)
    heard: list[int] = []

    async def listener(applied: Applied) -> None:
        if applied.projection == "products":
            heard.extend(e.position for e in applied.events)

    worker.listeners.append(listener)
    assert await worker.run_once() == 4  # written, not refreshed: the checkpoint stays
    # A replay of products from the start, while that batch waits for its refresh.
    await app.checkpoints.reset("products", 0, datetime.now(UTC))

    await worker.run_until_caught_up()

    # The replay took every product event again, those before the backlog included.
    assert {p for p, _ in before} <= set(heard)
    assert (await app.checkpoints.get("products")).position == await _head(app)


async def test_a_trickle_write_is_applied_without_waiting_for_the_linger(
    app: Bicameral,
) -> None:
    await app.worker.run_until_caught_up()
    await app.worker.release_leases()
    # A linger and a poll far beyond the deadline: only the wake-up can apply the write.
    worker = _worker(app, linger=3600, poll_interval=3600)
    idle = asyncio.Event()
    sleep = worker._sleep

    async def sleeping(seconds: float) -> None:
        idle.set()
        await sleep(seconds)

    worker._sleep = sleeping  # type: ignore[method-assign]
    running = asyncio.create_task(worker.run())
    try:
        for n in range(3):
            async with asyncio.timeout(DEADLINE):
                await idle.wait()  # the last write applied, the worker waits for the next
            idle.clear()
            [(position, _)] = await _products(app, f"TRICKLE-{n}", 1)
            worker.wake()  # as the commit does (in process, or by NOTIFY)
            async with asyncio.timeout(DEADLINE):
                while (await app.checkpoints.get("products")).position < position:
                    await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await running


async def test_commits_that_arrive_during_a_cycle_make_the_worker_linger(
    app: Bicameral,
) -> None:
    await app.worker.run_until_caught_up()
    await app.worker.release_leases()
    worker = _worker(app, linger=0.01, poll_interval=3600)
    lingered = asyncio.Event()
    run_once, pause = worker.run_once, worker._pause

    async def cycle() -> int:
        applied = await run_once()
        if applied:
            worker.wake()  # a commit while the cycle ran
        return applied

    async def pausing(seconds: float) -> None:
        if seconds == worker.linger:
            lingered.set()
        await pause(seconds)

    worker.run_once = cycle  # type: ignore[method-assign]
    worker._pause = pausing  # type: ignore[method-assign]
    # As many commands in one batch as make commits count as fast, and one more during it.
    await _products(app, "BUSY", worker.linger_commands)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(DEADLINE):
            await lingered.wait()
    finally:
        worker.stop()
        await running
    assert lingered.is_set()


async def test_a_batch_of_two_commands_with_a_commit_during_it_does_not_linger(
    app: Bicameral,
) -> None:
    # 20 writes/s against a cycle of about 50 ms: two commands a batch is a trickle still.
    await app.worker.run_until_caught_up()
    await app.worker.release_leases()
    worker = _worker(app, linger=3600, poll_interval=3600)
    run_once = worker.run_once
    cycles: list[int] = []
    commands: list[int] = []

    async def cycle() -> int:
        applied = await run_once()
        cycles.append(applied)
        commands.append(worker._commands)
        if len(cycles) == 1:
            worker.wake()  # a commit while the first cycle ran
        return applied

    worker.run_once = cycle  # type: ignore[method-assign]
    await _products(app, "PAIR", 2)  # two commands in one batch
    running = asyncio.create_task(worker.run())
    try:
        # Had it lingered (an hour), no second cycle would come before the deadline.
        async with asyncio.timeout(DEADLINE):
            while len(cycles) < 2:
                await asyncio.sleep(0.01)
    finally:
        worker.stop()
        await running
    assert cycles[0] == 2 and commands[0] == 2  # both products, two commands, in one batch
    assert len(cycles) >= 2  # and the next cycle came at once, with no linger
