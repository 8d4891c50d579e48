"""Helpers for the feed's fault tests (test_feed_faults.py).

A seeded stream of commands to write under fire, `bicameral worker` as a child
process that a test can SIGKILL, a look at the checkpoints table, and the one
comparison every fault test ends with: each read model equals what the write
database says, document for document, version for version.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from elasticsearch import AsyncElasticsearch
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings
from domain import commands as c
from domain.errors import DomainError
from readmodel.checkpoints import Checkpoint, Checkpoints
from readmodel.projections import Projection, default_projections
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.database import read_only
from writemodel.service import CommandService
from writemodel.tables import order_lines, orders

__all__ = [
    "READ_MODELS",
    "Progress",
    "WorkerProcess",
    "Workload",
    "eventually",
    "owner_pid",
    "progress",
    "read_model_mismatches",
    "worker_env",
]

BIN = Path(sys.executable).parent
READ_MODELS = ("products", "orders", "customers")


# --- waiting ---


T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    explain: Callable[[], str] = lambda: "",
) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}\n{explain()}")
        await asyncio.sleep(interval)


# --- the write side under load ---


class Workload:
    """Creates, price changes, stock, customers and orders, chosen by a seeded random.

    Commands the domain refuses (an order for more than is in stock, say) are
    counted and passed over: the point is a realistic mix of events, not that
    each one succeeds.
    """

    def __init__(self, commands: CommandService, *, seed: int) -> None:
        self.commands = commands
        self.rng = random.Random(seed)
        self.products: list[str] = []
        self.skus: dict[str, str] = {}
        # The price each product has after the last accepted command.
        self.prices: dict[str, int] = {}
        self.customers: list[str] = []
        self.orders: dict[str, str] = {}  # id -> status
        self.executed = 0
        self.refused = 0

    @property
    def attempted(self) -> int:
        return self.executed + self.refused

    async def run(self, stop: asyncio.Event, *, max_commands: int, pause: float) -> None:
        """Write until `stop` is set or `max_commands` have been tried, `pause` s apart."""
        while not stop.is_set() and self.attempted < max_commands:
            await self.step()
            await asyncio.sleep(pause)

    async def step(self) -> None:
        try:
            await self._step(self.rng.random())
        except DomainError:
            self.refused += 1
        else:
            self.executed += 1

    async def _step(self, r: float) -> None:
        rng = self.rng
        if len(self.products) < 4 or r < 0.12:
            n = len(self.products)
            sku = f"FAULT-{n}"
            price = rng.randint(100, 10_000)
            out = await self.commands.execute(
                c.CreateProduct(
                    sku=sku,
                    name=f"Fault product {n}",
                    price=price,
                    currency="EUR",
                    tags=("fault", f"t{n % 3}"),
                    initial_stock=rng.randint(0, 40),
                ),
                actor=SYSTEM,
            )
            self.products.append(out.snapshot["id"])
            self.skus[out.snapshot["id"]] = sku
            self.prices[out.snapshot["id"]] = price
        elif len(self.customers) < 3 or r < 0.2:
            n = len(self.customers)
            out = await self.commands.execute(
                c.RegisterCustomer(f"c{n}@example.com", f"Cust {n}"), actor=SYSTEM
            )
            self.customers.append(out.snapshot["id"])
        elif r < 0.36:
            product = rng.choice(self.products)
            price = rng.randint(100, 10_000)
            await self.commands.execute(c.ChangePrice(product, price), actor=SYSTEM)
            self.prices[product] = price
        elif r < 0.46:
            await self.commands.execute(
                c.ReceiveStock(rng.choice(self.products), rng.randint(1, 20)), actor=SYSTEM
            )
        elif r < 0.5:
            await self.commands.execute(
                c.AdjustStock(rng.choice(self.products), rng.randint(0, 50), reason="count"),
                actor=SYSTEM,
            )
        elif r < 0.55:
            product = rng.choice(self.products)
            # A rename re-projects every order with a line of this product.
            await self.commands.execute(
                c.UpdateProduct(product, name=f"Renamed {rng.randint(0, 999)}"), actor=SYSTEM
            )
        elif r < 0.75:
            lines = tuple(
                c.OrderLineRequest(self.skus[p], rng.randint(1, 3))
                for p in rng.sample(self.products, k=min(2, len(self.products)))
            )
            out = await self.commands.execute(
                c.PlaceOrder(rng.choice(self.customers), lines), actor=SYSTEM
            )
            self.orders[out.snapshot["id"]] = "placed"
        else:
            await self._move_an_order(r)

    async def _move_an_order(self, r: float) -> None:
        command: Callable[[str], c.Command]
        if r < 0.85:
            wanted, command, after = "placed", c.PayOrder, "paid"
        elif r < 0.93:
            wanted, command, after = "paid", c.ShipOrder, "shipped"
        else:
            wanted, command, after = "placed", c.CancelOrder, "cancelled"
        candidates = [id for id, status in self.orders.items() if status == wanted]
        if not candidates:
            raise DomainError(f"no {wanted} order to move")
        order = self.rng.choice(candidates)
        await self.commands.execute(command(order), actor=SYSTEM)
        self.orders[order] = after


# --- `bicameral worker` as a child process ---


def worker_env(settings: Settings, folder: Path, **overrides: str) -> dict[str, str]:
    """The environment of a `bicameral worker` over the same deployment as `settings`."""
    return {
        **os.environ,
        "DATA_DIR": str(folder),
        "DATABASE_URL": settings.write_database_url,
        "ELASTICSEARCH_URL": settings.elasticsearch_url,
        "INDEX_PREFIX": settings.index_prefix,
        "FEED_BATCH_SIZE": "20",
        "FEED_POLL_INTERVAL": "0.1",
        "FEED_LEASE_SECONDS": "2",
        "LOG_LEVEL": "info",
        **overrides,
    }


class WorkerProcess:
    """One `bicameral worker`; `close` (or `kill`) always reaps it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [BIN / "bicameral", "worker"], env=env, stdout=out, stderr=out
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no lease released, no batch finished, nothing flushed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        """Stop it gracefully if it still runs (SIGTERM, then SIGKILL), and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log} ---\n{self.log.read_text(errors='replace')[-chars:]}"


def owner_pid(owner: str | None) -> int | None:
    """The pid in a lease owner, `hostname:pid:nonce` (readmodel/feed.py)."""
    if owner is None:
        return None
    return int(owner.rsplit(":", 2)[1])


@dataclass(frozen=True)
class Progress:
    """Where the feed stands: the outbox head and each read model's checkpoint
    (its furthest-behind partition), and every partition's row."""

    head: int
    checkpoints: dict[str, Checkpoint]
    rows: list[Checkpoint]

    def lag(self, name: str) -> int:
        return self.head - self.checkpoints[name].position

    @property
    def behind(self) -> bool:
        return any(self.lag(name) > 0 for name in self.checkpoints)

    def owners(self) -> set[int | None]:
        return {owner_pid(cp.owner) for cp in self.rows}


async def progress(engine: AsyncEngine) -> Progress:
    async with read_only(engine) as conn:
        head, _ = await outbox.head(conn)
    found = {cp.name: cp for cp in await Checkpoints(engine).all()}
    rows = [cp for cp in await Checkpoints(engine).rows() if cp.read_model in READ_MODELS]
    missing = Checkpoint("", 0, None, None, None)
    return Progress(head, {name: found.get(name, missing) for name in READ_MODELS}, rows)


# --- the comparison ---


async def _all_events(engine: AsyncEngine) -> list[outbox.StoredEvent]:
    found: list[outbox.StoredEvent] = []
    async with read_only(engine) as conn:
        while batch := await outbox.read_after(conn, found[-1].position if found else 0, 1000):
            found.extend(batch)
    return found


async def _expected_versions(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per read model, document id -> position of the newest event that touches it.

    products: the product's Product and Stock events. orders: the order's own
    events, its customer's, and the renames (ProductUpdated) of its lines'
    products. customers: the customer's own events and those of their orders.
    """
    events = await _all_events(engine)
    async with read_only(engine) as conn:
        customer_of = dict((await conn.execute(select(orders.c.id, orders.c.customer_id))).all())
        line_rows = (
            await conn.execute(select(order_lines.c.order_id, order_lines.c.product_id))
        ).all()
    orders_of_customer: dict[str, set[str]] = {}
    for order_id, customer_id in customer_of.items():
        orders_of_customer.setdefault(customer_id, set()).add(order_id)
    orders_of_product: dict[str, set[str]] = {}
    for order_id, product_id in line_rows:
        orders_of_product.setdefault(product_id, set()).add(order_id)

    newest: dict[str, dict[str, int]] = {name: {} for name in READ_MODELS}

    def touch(name: str, id: str, position: int) -> None:
        newest[name][id] = max(newest[name].get(id, 0), position)

    for e in events:
        kind, id, pos = e.aggregate_type, e.aggregate_id, e.position
        if kind in ("Product", "Stock"):
            touch("products", id, pos)
        if kind == "Order":
            touch("orders", id, pos)
            if id in customer_of:
                touch("customers", customer_of[id], pos)
        if kind == "Customer":
            touch("customers", id, pos)
            for order_id in orders_of_customer.get(id, ()):
                touch("orders", order_id, pos)
        if e.event_type == "ProductUpdated":
            for order_id in orders_of_product.get(id, ()):
                touch("orders", order_id, pos)
    return newest


async def _expected_documents(
    engine: AsyncEngine, projection: Projection
) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    async with read_only(engine) as conn:
        after = ""
        for _ in range(10_000):
            ids = await projection.all_ids(conn, after, 500)
            if not ids:
                break
            docs.update(await projection.documents(conn, ids))
            after = ids[-1]
    return docs


async def _indexed(
    client: AsyncElasticsearch, alias: str
) -> tuple[int, dict[str, tuple[int, dict[str, Any]]]]:
    await client.indices.refresh(index=alias)
    count = (await client.count(index=alias))["count"]
    found = await client.search(
        index=alias, size=10_000, version=True, query={"match_all": {}}, sort=["_doc"]
    )
    hits = found["hits"]["hits"]
    assert len(hits) == count < 10_000, "more documents than one page holds"
    return count, {h["_id"]: (h["_version"], h["_source"]) for h in hits}


async def read_model_mismatches(
    engine: AsyncEngine, client: AsyncElasticsearch, prefix: str
) -> list[str]:
    """Every way the indexes differ from the write database; empty when they agree.

    Each document must equal the projection's `documents()` over the current
    rows, field by field (`position` aside, it is the version again), carry
    the newest touching event's position as its `_version`, and no index may
    hold an id the write database lacks, nor more documents than it has rows.
    """
    versions = await _expected_versions(engine)
    problems: list[str] = []
    for projection in default_projections():
        name = projection.name
        expected = await _expected_documents(engine, projection)
        count, indexed = await _indexed(client, projection.index.alias(prefix))
        if count != len(expected):
            problems.append(f"{name}: {count} documents for {len(expected)} rows")
        for id in sorted(indexed.keys() - expected.keys()):
            problems.append(f"{name}/{id}: indexed, but no such row")
        for id in sorted(expected.keys() - indexed.keys()):
            problems.append(f"{name}/{id}: a row, but not indexed")
        for id in sorted(expected.keys() & indexed.keys()):
            version, source = indexed[id]
            source = dict(source)
            position = source.pop("position", None)
            if source != expected[id]:
                fields = sorted(
                    k
                    for k in source.keys() | expected[id].keys()
                    if source.get(k) != expected[id].get(k)
                )
                problems.append(
                    f"{name}/{id}: "
                    + ", ".join(
                        f"{k}={source.get(k)!r}, not {expected[id].get(k)!r}" for k in fields
                    )
                )
            want = versions[name].get(id)
            if version != want or position != want:
                problems.append(f"{name}/{id}: _version {version}, position {position}, not {want}")
    return problems
