"""The read side on a 3-node Elasticsearch cluster that loses a node under load.

A local cluster (tools/search_node.py --nodes 3) on ports 9280-9282, one replica
per shard, with ELASTICSEARCH_URL naming all three nodes. The app writes from
several writers at once while the node holding the products index's primary is
SIGKILLed and then started again; afterwards every acknowledged mutation must be
searchable with its values. SIGKILL rather than SIGTERM: a node that gets no
chance to hand over is the harder case, and a stop the client cannot see coming.

The cluster is the test's own: started by the module's fixture (about 30 s on
an idle 2-core machine; up to 240 s allowed), stopped after it. It runs in
`make test`, marked `cluster` so that `-m "not cluster"` leaves it out and a
failure names it; a cluster that cannot start fails the test with the nodes'
logs rather than skipping it. The write database is SQLite with the worker
embedded: the subject is Elasticsearch, and one process keeps the load simple.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from elasticsearch import ApiError, TransportError

from api.bootstrap import Bicameral, build
from api.settings import Settings
from domain import commands as c
from tools import search_node
from writemodel.access import SYSTEM

pytestmark = [pytest.mark.elasticsearch, pytest.mark.cluster]

PORT = int(os.environ.get("TEST_CLUSTER_PORT", "9280"))
NODES = 3
DATA_DIR = search_node.REPO_ROOT / ".data" / "test-cluster"
WRITERS = 4
PRODUCTS_PER_WRITER = 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """ELASTICSEARCH_URL of the running 3-node cluster; stopped afterwards."""
    try:
        urls = search_node.start(port=PORT, data_dir=DATA_DIR, nodes=NODES, timeout=240.0)
    except search_node.SearchNodeError as error:
        search_node.stop(PORT, DATA_DIR, NODES)
        pytest.fail(f"the 3-node test cluster did not start:\n{error}", pytrace=False)
    try:
        yield urls
    finally:
        search_node.stop(PORT, DATA_DIR, NODES)


@pytest.fixture
async def app(cluster: str, tmp_path: Path) -> AsyncIterator[Bicameral]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'write.db'}",
        elasticsearch_url=cluster,
        index_prefix=f"test-{uuid.uuid4().hex[:10]}",
        elasticsearch_replicas=1,
        embedded_worker=True,
        feed_poll_interval=0.05,
    )
    from writemodel.migrate import migrate

    app = build(settings)
    await migrate(app.engine)
    await app.start()
    try:
        yield app
    finally:
        await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
        await app.stop()


class Writers:
    """Several writers creating products and changing their prices; keeps what was
    acknowledged (the command returned), which is what must be searchable."""

    def __init__(self, app: Bicameral) -> None:
        self.app = app
        self.prices: dict[str, int] = {}  # product id -> last acknowledged price
        self.position = 0  # the highest position acknowledged
        self.stopping = asyncio.Event()
        self.acknowledged = 0

    def _acknowledge(self, product_id: str, price: int, position: int) -> None:
        self.prices[product_id] = price
        self.position = max(self.position, position)
        self.acknowledged += 1

    async def write(self, writer: int) -> None:
        ids: list[str] = []
        for n in range(PRODUCTS_PER_WRITER):
            price = 1000 + n
            done = await self.app.commands.execute(
                c.CreateProduct(
                    sku=f"W{writer}-{n}", name=f"Product {n}", price=price, currency="EUR"
                ),
                actor=SYSTEM,
            )
            ids.append(done.snapshot["id"])
            self._acknowledge(ids[-1], price, done.position)
        step = 0
        while not self.stopping.is_set():
            step += 1
            product_id = ids[step % len(ids)]
            price = 2000 + step
            done = await self.app.commands.execute(
                c.ChangePrice(product_id=product_id, price=price), actor=SYSTEM
            )
            self._acknowledge(product_id, price, done.position)
            # About 20 writes a second each: load, yet CPU left on 2 cores for a node to
            # restart and a replica to recover beside the writers and the worker.
            await asyncio.sleep(0.05)


def _primary_node_port(shards: list[dict[str, Any]]) -> int:
    """The HTTP port of the node holding the products index's primary shard."""
    [primary] = [s for s in shards if s["prirep"] == "p"]
    return int(primary["node"].removeprefix("bicameral-"))


async def _nodes_in_cluster(app: Bicameral) -> int:
    health = await app.search.cluster.health()
    return int(health["number_of_nodes"])


async def _wait_for(condition: Any, deadline: float, what: str) -> None:
    """Until `condition()` holds; an Elasticsearch error (no master while one is
    elected, say) counts as not yet."""
    while True:
        try:
            if await condition():
                return
        except (ApiError, TransportError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_every_acknowledged_write_is_searchable_after_a_node_is_killed_and_restarted(
    app: Bicameral,
) -> None:
    alias = f"{app.settings.index_prefix}-products"
    await _wait_for(
        lambda: _green(app), time.monotonic() + 120, "the products index to have its replica"
    )
    shards = cast(
        list[dict[str, Any]], (await app.search.cat.shards(index=alias, format="json")).body
    )
    assert sorted(s["prirep"] for s in shards) == ["p", "r"]
    victim = _primary_node_port(shards)
    writers = Writers(app)
    tasks = [asyncio.create_task(writers.write(w)) for w in range(WRITERS)]
    try:
        await asyncio.sleep(2.0)  # writes under way, some projected
        pid = search_node.status(victim, DATA_DIR)["pid"]
        assert pid is not None, f"the node on {victim} was not started by this test's cluster"
        os.kill(pid, signal.SIGKILL)
        await _wait_for(
            lambda: _fewer_nodes(app), time.monotonic() + 60, "the cluster to see the node gone"
        )
        # Writes go on, and the worker goes on projecting them, while the node is away.
        acknowledged, projected = writers.acknowledged, await app.checkpoints.reached(["products"])
        await asyncio.sleep(3.0)
        await _wait_for(
            lambda: _reached(app, projected + 1),
            time.monotonic() + 60,
            "the worker to project a write with one node down",
        )
        assert writers.acknowledged > acknowledged
        # The same call starts whichever node is missing and waits for green with all three.
        await asyncio.to_thread(
            search_node.start, port=PORT, data_dir=DATA_DIR, nodes=NODES, timeout=240.0
        )
        await asyncio.sleep(2.0)  # and go on after it is back
    finally:
        writers.stopping.set()
        # Each ends its loop; a failure above leaves no writer behind either.
        done, hung = await asyncio.wait(tasks, timeout=30)
        for task in hung:
            task.cancel()
    assert not hung, "a writer did not finish its last command in 30 s"
    for task in done:
        task.result()  # a writer's own failure fails the test
    await _wait_for(
        lambda: _reached(app, writers.position),
        time.monotonic() + 120,
        f"the products read model to reach position {writers.position}",
    )

    assert await _nodes_in_cluster(app) == NODES
    await app.search.indices.refresh(index=alias)
    found = await app.search.search(index=alias, size=10_000, query={"match_all": {}})
    searchable = {hit["_id"]: hit["_source"]["price"] for hit in found["hits"]["hits"]}
    assert len(writers.prices) == WRITERS * PRODUCTS_PER_WRITER
    assert searchable == writers.prices
    assert writers.acknowledged > WRITERS * PRODUCTS_PER_WRITER  # price changes went through too


async def _green(app: Bicameral) -> bool:
    alias = f"{app.settings.index_prefix}-products"
    health = await app.search.cluster.health(index=alias)
    return bool(health["status"] == "green")


async def _fewer_nodes(app: Bicameral) -> bool:
    return await _nodes_in_cluster(app) < NODES


async def _reached(app: Bicameral, position: int) -> bool:
    return await app.checkpoints.reached(["products"]) >= position
