"""Path 3: commits/s of `createProduct` and `placeOrder` over HTTP, against raw inserts.

System: the mutation over HTTP to `bicameral serve` (no worker running, so the
write path has the machine to itself, as the baseline does), concurrency 16.
Baseline: in this process, plain SQLAlchemy Core on an engine configured
without Bicameral's code but with the same durability settings (on SQLite:
WAL, synchronous=NORMAL; PostgreSQL: the same server), writing the same rows
in one transaction per command, 16 at a time:

- createProduct: a products row, a stock row, and the outbox rows of
  ProductCreated and StockReceived.
- placeOrder (two lines): both stock rows' reservation (an UPDATE guarded by
  reserved + quantity <= on hand), an orders row, two order_lines rows, and the
  outbox rows of two StockReserved and one OrderPlaced.

A third side, the command service called in-process (no HTTP, no GraphQL),
splits the system's time between the web layers and the command layer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import event, insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.data import customer, product
from bench.graphql import CREATE_PRODUCT, PLACE_ORDER, http_client, mutation_payload, post
from bench.load import closed_loop
from bench.report import Figure, Target
from bench.services import Deployment, cpu_seconds
from bench.stats import Distribution, median
from domain.commands import CreateProduct
from writemodel.access import SYSTEM
from writemodel.tables import events, order_lines, orders, products, stock

__all__ = [
    "OrderFixtures",
    "baseline_engine",
    "create_product_command",
    "http_create_product",
    "measure",
]

CONCURRENCY = 16
LINES = 2


@dataclass(frozen=True)
class OrderFixtures:
    """Products 0..products-1 of the catalog and customers 0..customers-1 exist on both sides."""

    products: int
    customers: int

    def lines(self, n: int) -> list[tuple[int, int]]:
        """(catalog index, quantity) per line: consecutive orders touch different stock rows."""
        return [((LINES * n + k) % self.products, 1) for k in range(LINES)]


def baseline_engine(url: str) -> AsyncEngine:
    """An engine with the service's durability settings and none of its code."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # The service's pool size (writemodel/database.py), without its pre-ping.
    return create_async_engine(url, pool_size=10, max_overflow=10)


def _event(
    aggregate_type: str, aggregate_id: str, version: int, kind: str, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "aggregate_version": version,
        "event_type": kind,
        "payload": payload,
        "occurred_at": datetime.now(UTC),
        "correlation_id": str(uuid.uuid4()),
    }


def _new_product(sku: str, n: int) -> dict[str, Any]:
    p = product(n)
    return {**p.create_input(initial_stock=100), "sku": sku}


def create_product_command(sku: str, n: int) -> CreateProduct:
    """The command path-3's createProduct sends, for the in-process callers."""
    f = _new_product(sku, n)
    return CreateProduct(
        sku=f["sku"],
        name=f["name"],
        price=f["price"],
        currency=f["currency"],
        description=f["description"],
        category=f["category"],
        tags=tuple(f["tags"]),
        initial_stock=f["initialStock"],
    )


async def http_create_product(
    client: httpx.AsyncClient, api_url: str, sku: str, n: int
) -> dict[str, Any]:
    """createProduct over HTTP; its success payload (consistencyToken, product id)."""
    data = await post(client, api_url + "/graphql", CREATE_PRODUCT, {"input": _new_product(sku, n)})
    return mutation_payload(data, "createProduct")


async def raw_create_product(engine: AsyncEngine, sku: str, n: int) -> None:
    fields = _new_product(sku, n)
    id, now = str(uuid.uuid4()), datetime.now(UTC)
    created = {k: fields[k] for k in ("sku", "name", "description", "category", "tags", "price")}
    async with engine.begin() as conn:
        await conn.execute(
            insert(products).values(
                id=id,
                version=1,
                **created,
                currency=fields["currency"],
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(stock).values(
                product_id=id, version=1, on_hand=100, reserved=0, units_sold=0, updated_at=now
            )
        )
        await conn.execute(
            insert(events),
            [
                _event(
                    "Product",
                    id,
                    1,
                    "ProductCreated",
                    {**created, "currency": fields["currency"], "status": "active"},
                ),
                _event("Stock", id, 1, "StockReceived", {"quantity": 100, "on_hand": 100}),
            ],
        )


async def raw_place_order(engine: AsyncEngine, fixtures: OrderFixtures, n: int) -> None:
    buyer = customer(n % fixtures.customers)
    lines = [(product(i), q) for i, q in fixtures.lines(n)]
    order_id, now = str(uuid.uuid4()), datetime.now(UTC)
    total = sum(p.price * q for p, q in lines)
    async with engine.begin() as conn:
        outbox: list[dict[str, Any]] = []
        for p, q in sorted(lines, key=lambda line: line[0].id):
            found = await conn.execute(
                update(stock)
                .where(stock.c.product_id == p.id, stock.c.reserved + q <= stock.c.on_hand)
                .values(reserved=stock.c.reserved + q, version=stock.c.version + 1, updated_at=now)
                .returning(stock.c.version, stock.c.reserved)
            )
            version, reserved = found.one()
            outbox.append(
                _event(
                    "Stock",
                    p.id,
                    version,
                    "StockReserved",
                    {"order_id": order_id, "quantity": q, "reserved": reserved},
                )
            )
        await conn.execute(
            insert(orders).values(
                id=order_id,
                version=1,
                customer_id=buyer.id,
                status="placed",
                currency="EUR",
                total=total,
                placed_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(order_lines),
            [
                {
                    "order_id": order_id,
                    "line_no": i,
                    "product_id": p.id,
                    "sku": p.sku,
                    "quantity": q,
                    "unit_price": p.price,
                }
                for i, (p, q) in enumerate(lines)
            ],
        )
        outbox.append(
            _event(
                "Order",
                order_id,
                1,
                "OrderPlaced",
                {
                    "customer_id": buyer.id,
                    "lines": [
                        {"product_id": p.id, "sku": p.sku, "quantity": q, "unit_price": p.price}
                        for p, q in lines
                    ],
                    "total": total,
                    "currency": "EUR",
                },
            )
        )
        await conn.execute(insert(events), outbox)


def _order_input(fixtures: OrderFixtures, n: int) -> dict[str, Any]:
    return {
        "customerId": customer(n % fixtures.customers).id,
        "lines": [{"sku": product(i).sku, "quantity": q} for i, q in fixtures.lines(n)],
    }


async def measure(
    deployment: Deployment,
    api_url: str,
    api_pid: int,
    bearer: str,
    baseline_url: str,
    elasticsearch_url: str,
    fixtures: OrderFixtures,
    *,
    requests: int,
    seconds: float,
    rounds: int,
) -> tuple[list[Figure], dict[str, float]]:
    """The figures, and the system's createProduct commits/s (path 8 compares with it)."""
    from bench.projection import build_app
    from domain.commands import OrderLineRequest, PlaceOrder

    print(
        f"[3] mutations ({deployment.name}): {rounds} round(s) of {requests} or "
        f"{seconds:.0f}s per kind per side, concurrency {CONCURRENCY}",
        flush=True,
    )
    app = build_app(deployment, elasticsearch_url)  # never started: its command service only
    engine = baseline_engine(baseline_url)
    figures: list[Figure] = []
    system_rates: dict[str, float] = {}
    try:
        async with http_client(CONCURRENCY, bearer) as client:
            for kind in ("createProduct", "placeOrder"):
                sides: dict[str, Callable[[int, int], Awaitable[None]]]
                if kind == "createProduct":

                    async def http_create(r: int, n: int) -> None:
                        await http_create_product(client, api_url, f"H{r}-{n:07d}", n)

                    async def service_create(r: int, n: int) -> None:
                        await app.commands.execute(
                            create_product_command(f"S{r}-{n:07d}", n), actor=SYSTEM
                        )

                    async def raw_create(r: int, n: int) -> None:
                        await raw_create_product(engine, f"B{r}-{n:07d}", n)

                    sides = {"http": http_create, "service": service_create, "raw": raw_create}
                else:

                    async def http_order(r: int, n: int) -> None:
                        variables = {"input": _order_input(fixtures, n)}
                        data = await post(client, api_url + "/graphql", PLACE_ORDER, variables)
                        mutation_payload(data, "placeOrder")

                    async def service_order(r: int, n: int) -> None:
                        i = _order_input(fixtures, n)
                        await app.commands.execute(
                            PlaceOrder(
                                customer_id=i["customerId"],
                                lines=tuple(OrderLineRequest(**line) for line in i["lines"]),
                            ),
                            actor=SYSTEM,
                        )

                    async def raw_order(r: int, n: int) -> None:
                        await raw_place_order(engine, fixtures, n)

                    sides = {"http": http_order, "service": service_order, "raw": raw_order}
                rates: dict[str, list[float]] = {name: [] for name in sides}
                latencies: dict[str, list[float]] = {name: [] for name in sides}
                cpu: dict[str, list[float]] = {name: [] for name in sides}
                # Whose CPU does the work: the API process over HTTP, this one otherwise.
                worker_pid = {"http": api_pid, "service": os.getpid(), "raw": os.getpid()}
                for r in range(rounds + 1):  # round 0 warms up (connections, caches)
                    names = ["http", "raw"] if r % 2 else ["raw", "http"]
                    if r in (0, rounds):  # the split's third side: once is enough
                        names.insert(1, "service")
                    for name in names:
                        call = sides[name]

                        async def one(n: int, r: int = r, call: Any = call) -> None:
                            await call(r, n)

                        total = requests if r else CONCURRENCY * 2
                        before = cpu_seconds(worker_pid[name])
                        result = await closed_loop(
                            one, total=total, concurrency=CONCURRENCY, duration=seconds
                        )
                        used = cpu_seconds(worker_pid[name]) - before
                        if result.failed:
                            raise RuntimeError(f"{kind} {name}: {result.errors}")
                        if r:
                            cpu[name].append(1000 * used / max(1, result.completed))
                            rates[name].append(result.rate)
                            latencies[name].extend(result.latencies)
                            print(f"    {kind} {name}: {result.rate:,.0f} commits/s", flush=True)
                system_rates[kind] = median(rates["http"])
                figures.append(
                    Figure(
                        path="3",
                        measure=f"{kind} commits/s over HTTP / raw SQLAlchemy",
                        database=deployment.name,
                        system=median(rates["http"]),
                        baseline=median(rates["raw"]),
                        unit="commits/s",
                        target=Target(">=", 0.5),
                        system_is=f"{kind} over HTTP, concurrency {CONCURRENCY}",
                        baseline_is="SQLAlchemy Core inserts of the same rows + outbox rows",
                        details={
                            "rounds": rates,
                            "command_service_in_process_commits_per_s": median(rates["service"]),
                            # http: the API process's CPU; service and raw: this process's,
                            # load generation included.
                            "cpu_ms_per_commit": {k: median(v) for k, v in cpu.items()},
                            "latency_ms": {
                                k: Distribution.of(v).as_dict() for k, v in latencies.items()
                            },
                        },
                    )
                )
    finally:
        await engine.dispose()
        await app.stop()
    return figures, system_rates
