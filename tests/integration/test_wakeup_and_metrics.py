"""The worker wakes on new events without waiting for its poll; /metrics shows the lag."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.bootstrap import Bicameral, build
from api.settings import Settings
from domain import commands as c
from writemodel.access import SYSTEM
from writemodel.database import is_postgres

pytestmark = pytest.mark.elasticsearch


@pytest.fixture
async def slow_polling(settings: Settings, engine: object) -> AsyncIterator[Bicameral]:
    """An app whose worker polls only once a minute: anything faster is a wake-up."""
    app = build(dataclasses.replace(settings, feed_poll_interval=60.0), embedded_worker=True)
    await app.start()
    await app.worker.run_until_caught_up()
    yield app
    await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
    await app.stop()


async def _wait_projected(app: Bicameral, position: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while await app.reader.reached(["products"]) < position:
            await asyncio.sleep(0.05)


async def test_a_commit_elsewhere_wakes_the_worker_long_before_its_next_poll(
    slow_polling: Bicameral, settings: Settings
) -> None:
    # Give the worker time to settle into its minute-long sleep.
    await asyncio.sleep(0.5)
    if is_postgres(slow_polling.engine):
        # Another process's commit: only PostgreSQL's NOTIFY can reach this worker.
        other = build(settings, embedded_worker=False)
        try:
            outcome = await other.commands.execute(
                c.CreateProduct(sku="WAKE-1", name="Wake", price=1, currency="EUR"), actor=SYSTEM
            )
        finally:
            await other.stop()
    else:
        # On SQLite the API and the worker share a process: the commit wakes it directly.
        outcome = await slow_polling.commands.execute(
            c.CreateProduct(sku="WAKE-1", name="Wake", price=1, currency="EUR"), actor=SYSTEM
        )
        slow_polling.committed()

    await _wait_projected(slow_polling, outcome.position)
    assert await slow_polling.reader.get("products", outcome.snapshot["id"]) is not None


async def test_metrics_report_head_position_and_lag_per_read_model(app: Bicameral) -> None:
    await app.commands.execute(
        c.CreateProduct(sku="MET-1", name="M", price=1, currency="EUR"), actor=SYSTEM
    )
    transport = httpx.ASGITransport(app=create_app(bicameral=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = (await client.get("/metrics")).text
        await app.worker.run_until_caught_up()
        response = await client.get("/metrics")
        after = response.text

    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE bicameral_projection_lag_events gauge" in after
    assert 'bicameral_projection_lag_events{projection="products"} 1' in before
    assert 'bicameral_projection_lag_events{projection="products"} 0' in after
    assert 'bicameral_projection_position{projection="orders"} 1' in after
    assert "bicameral_outbox_head 1" in after
