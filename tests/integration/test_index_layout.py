"""ELASTICSEARCH_SHARDS, _REPLICAS and _REFRESH_INTERVAL on the suite's node.

The suite's node is one node, so replicas stay 0 here; replicas on a real
cluster are tested in test_search_cluster.py.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from api.bootstrap import Bicameral, build
from api.settings import Settings
from domain import commands as c
from readmodel.indexes import INDEXES, PRODUCTS
from readmodel.rebuild import rebuild
from readmodel.setup import alias_state
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

Deployment = Callable[..., AbstractAsyncContextManager[Bicameral]]


@pytest.fixture
def deployment(settings: Settings, engine: Any) -> Deployment:
    """Bicameral over one write database and index prefix, under the settings given:
    several of them in turn are one deployment restarted with other settings."""

    @asynccontextmanager
    async def started(**changes: Any) -> AsyncIterator[Bicameral]:
        app = build(dataclasses.replace(settings, **changes))
        await app.start()
        try:
            yield app
        finally:
            await app.stop()

    return started


@pytest.fixture(autouse=True)
async def drop_indexes(settings: Settings) -> AsyncIterator[None]:
    yield
    async with AsyncElasticsearch(settings.elasticsearch_hosts) as client:
        await client.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)


async def _layout(app: Bicameral, name: str = "products") -> tuple[int, int, str | None]:
    """(shards, replicas, refresh interval) of the index serving read model `name`."""
    found = await app.search.indices.get_settings(index=f"{app.settings.index_prefix}-{name}")
    [index] = found.body.values()
    settings = index["settings"]["index"]
    return (
        int(settings["number_of_shards"]),
        int(settings["number_of_replicas"]),
        settings.get("refresh_interval"),
    )


async def _create_product(app: Bicameral, sku: str) -> int:
    """The position of the new product's last event: what its consistency token carries."""
    result = await app.commands.execute(
        c.CreateProduct(sku=sku, name=f"Product {sku}", price=1000, currency="EUR"), actor=SYSTEM
    )
    return result.position


async def test_new_indexes_get_the_shards_and_refresh_interval_of_the_settings(
    deployment: Deployment,
) -> None:
    async with deployment(elasticsearch_shards=2, elasticsearch_refresh_interval="30s") as app:
        await app.worker.run_once()

        for name in INDEXES:
            assert await _layout(app, name) == (2, 0, "30s")


async def test_the_layout_leaves_the_digest_alone_so_no_rebuild_is_due(
    deployment: Deployment,
) -> None:
    async with deployment(elasticsearch_shards=3, elasticsearch_refresh_interval="5s") as app:
        await app.worker.run_once()

        state = await alias_state(app.search, app.settings.index_prefix, PRODUCTS)

    assert state.serving_digest == PRODUCTS.digest
    assert state.rebuild_due is False


async def test_a_starting_worker_gives_existing_indexes_a_new_refresh_interval_and_takes_it_back(
    deployment: Deployment,
) -> None:
    async with deployment() as app:
        await app.worker.run_once()
        assert await _layout(app) == (1, 0, None)

    async with deployment(elasticsearch_refresh_interval="-1") as app:
        await app.worker.run_once()
        assert await _layout(app) == (1, 0, "-1")

    # Unset again: back to Elasticsearch's own default, not left at the last value.
    async with deployment() as app:
        await app.worker.run_once()
        assert await _layout(app) == (1, 0, None)


async def test_a_new_shard_count_is_left_to_a_rebuild_which_applies_it(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    async with deployment() as app:
        await _create_product(app, "one-shard")
        await app.worker.run_once()

    with caplog.at_level(logging.WARNING, logger="readmodel.setup"):
        async with deployment(elasticsearch_shards=2) as app:
            await app.worker.run_once()
            assert await _layout(app) == (1, 0, None)
            assert "bicameral readmodel rebuild products" in caplog.text

            await rebuild(
                "products",
                engine=app.engine,
                client=app.search,
                prefix=app.settings.index_prefix,
                worker=app.worker,
                checkpoints=app.checkpoints,
                catch_up_timeout=60.0,
                retire_after=0.1,
            )

            assert await _layout(app) == (2, 0, None)
            alias = f"{app.settings.index_prefix}-products"
            assert (await app.search.count(index=alias))["count"] == 1


async def test_without_periodic_refreshes_a_reached_token_still_finds_the_write(
    deployment: Deployment,
) -> None:
    async with deployment(elasticsearch_refresh_interval="-1") as app:
        position = await _create_product(app, "no-refresh")
        while await app.worker.run_once():
            pass

        assert await app.checkpoints.reached(["products"]) >= position
        found = await app.search.search(
            index=f"{app.settings.index_prefix}-products", query={"term": {"sku": "NO-REFRESH"}}
        )
        assert found["hits"]["total"]["value"] == 1
