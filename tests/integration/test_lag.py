"""How far each read model is behind (readmodel/lag.py), read without a feed worker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from api.bootstrap import Bicameral
from domain import commands as c
from readmodel.lag import read_lag
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch


async def _product(app: Bicameral, sku: str) -> int:
    created = c.CreateProduct(sku=sku, name=f"Product {sku}", price=1000, currency="EUR")
    position = (await app.commands.execute(created, actor=SYSTEM)).position
    assert position is not None
    return position


async def test_the_lag_counts_the_events_each_read_model_has_not_applied(
    app: Bicameral,
) -> None:
    await _product(app, "LAG-1")
    await app.worker.run_until_caught_up()
    head = await _product(app, "LAG-2")

    lags = {lag.name: lag for lag in await app.lag()}

    assert set(lags) == set(app.read_models)
    assert {lag.head for lag in lags.values()} == {head}
    assert lags["products"].lag_events == 1
    assert lags["products"].position == head - 1
    assert lags["products"].lag_seconds >= 0
    assert lags["products"].owner == app.worker.owner  # its lease outlives the cycles


async def test_the_lag_is_read_on_a_single_connection(app: Bicameral, database_url: str) -> None:
    await _product(app, "LAG-3")
    # A pool of one connection, no overflow: a read that held a second one
    # would wait for the first to come back, and time out.
    lone = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=3)
    try:
        lags = await read_lag(lone, app.read_models, datetime.now(UTC))
    finally:
        await lone.dispose()

    assert [lag.name for lag in lags] == app.read_models
    assert all(lag.lag_events == lag.head > 0 for lag in lags)
