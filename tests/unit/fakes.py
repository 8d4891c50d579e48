"""An in-memory unit of work for unit tests of handlers, the command service and the API.

It mirrors `SqlUnitOfWork`: repositories hand out copies of what the store
holds; `commit` checks every optimistic version and unique value before it
writes anything (a taken sku is refused there only, as the SQL adapter leaves
it to the unique constraint), then saves copies, appends the events to the
outbox and stores the idempotency result, all or nothing. Several
unit-of-work instances share one `FakeStore`, as several transactions share
one database.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.errors import AlreadyExists, ConcurrencyConflict
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from writemodel.access import Actor
from writemodel.outbox import StoredEvent
from writemodel.unit_of_work import (
    CustomerRepository,
    IdempotencyRace,
    OrderRepository,
    ProductRepository,
    Remember,
    Remembered,
    Repository,
    StockRepository,
    UnitOfWork,
)

__all__ = [
    "DuplicateId",
    "FakeClock",
    "FakeStore",
    "FakeUnitOfWork",
    "sequential_ids",
]

A = TypeVar("A", bound=Aggregate)

# Runs inside a commit, before its checks: another writer that got there first.
CommitHook = Callable[[], Awaitable[None]]


class DuplicateId(Exception):
    """A new aggregate's id is taken (the SQL adapter lets its IntegrityError through)."""


@dataclass(frozen=True)
class StoredKey:
    request_hash: str
    result: dict[str, Any]
    expires_at: datetime


@dataclass
class FakeStore:
    """What the write database would hold: state, the outbox and idempotency keys."""

    products: dict[str, Product] = field(default_factory=dict)
    stocks: dict[str, Stock] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    outbox: list[StoredEvent] = field(default_factory=list)
    # By (scope, key), as the table's primary key.
    idempotency_keys: dict[tuple[str, str], StoredKey] = field(default_factory=dict)
    commits: int = 0
    _hooks: list[CommitHook] = field(default_factory=list)
    _after_hooks: list[CommitHook] = field(default_factory=list)

    @property
    def head(self) -> int:
        return self.outbox[-1].position if self.outbox else 0

    def event_types(self) -> list[str]:
        return [event.event_type for event in self.outbox]

    def before_next_commit(self, hook: CommitHook) -> None:
        """Run `hook` at the start of the next commit, between its loads and its writes."""
        self._hooks.append(hook)

    def after_next_commit(self, hook: CommitHook) -> None:
        """Run `hook` at the end of the next commit, once it has written: what it raises
        is what the caller sees of a commit that landed (a lost answer, say)."""
        self._after_hooks.append(hook)

    def state(self) -> dict[str, Any]:
        """Everything stored, as plain values: unchanged by a command that wrote nothing."""
        return copy.deepcopy(
            {
                "aggregates": {
                    name: {key: _plain(value) for key, value in table.items()}
                    for name, table in self.tables().items()
                },
                "outbox": self.outbox,
                "idempotency_keys": self.idempotency_keys,
            }
        )

    def tables(self) -> dict[str, dict[str, Any]]:
        return {
            "products": self.products,
            "stocks": self.stocks,
            "customers": self.customers,
            "orders": self.orders,
        }

    def _take_hook(self) -> CommitHook | None:
        return self._hooks.pop(0) if self._hooks else None

    def _take_after_hook(self) -> CommitHook | None:
        return self._after_hooks.pop(0) if self._after_hooks else None


def _plain(aggregate: Aggregate) -> dict[str, Any]:
    return {key: value for key, value in vars(aggregate).items() if key != "pending"}


def _copy(aggregate: A) -> A:
    clone = copy.deepcopy(aggregate)
    clone.pending = []
    return clone


class _Tables(Repository[A]):
    def __init__(self, table: dict[str, A]) -> None:
        super().__init__()
        self.table = table

    async def _load(self, id: str) -> A | None:
        stored = self.table.get(id)
        return None if stored is None else _copy(stored)


class FakeProducts(_Tables[Product], ProductRepository):
    async def _load_by_sku(self, sku: str) -> Product | None:
        for stored in self.table.values():
            if stored.sku == sku:
                return _copy(stored)
        return None


class FakeStocks(_Tables[Stock], StockRepository):
    pass


class FakeCustomers(_Tables[Customer], CustomerRepository):
    async def email_taken(self, email: str) -> bool:
        if any(c.email == email for c in self.seen.values()):
            return True
        return any(c.email == email for c in self.table.values())


class FakeOrders(_Tables[Order], OrderRepository):
    pass


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.products = FakeProducts(store.products)
        self.stocks = FakeStocks(store.stocks)
        self.customers = FakeCustomers(store.customers)
        self.orders = FakeOrders(store.orders)
        self.committed = False
        self.rolled_back = False

    async def commit(
        self,
        *,
        correlation_id: str,
        now: datetime,
        actor: Actor,
        remember: Remember | None = None,
    ) -> int:
        hook = self.store._take_hook()
        if hook is not None:
            await hook()
        store = self.store
        # Check everything first: a refused commit writes nothing, like a rolled-back transaction.
        # The idempotency key comes first, as in SqlUnitOfWork: the loser of a race for
        # one key replays the winner rather than tripping over its unique sku.
        if remember is not None:
            live = store.idempotency_keys.get((remember.scope, remember.key))
            if live is not None and live.expires_at > now:
                raise IdempotencyRace()
        pairs: list[tuple[Repository[Any], dict[str, Any]]] = [
            (self.products, store.products),
            (self.stocks, store.stocks),
            (self.customers, store.customers),
            (self.orders, store.orders),
        ]
        writes = [
            (table, aggregate) for repo, table in pairs for aggregate in self._changed(repo, table)
        ]
        # The messages are SqlUnitOfWork's, which names the sku of the product it adds.
        self._check_unique(
            [a for t, a in writes if t is store.products],
            store.products,
            "sku",
            "SKU_TAKEN",
            "a product with sku {} exists",
        )
        self._check_unique(
            [a for t, a in writes if t is store.customers],
            store.customers,
            "email",
            "EMAIL_TAKEN",
            "a customer with this email exists",
        )
        for table, aggregate in writes:
            table[aggregate.id] = _copy(aggregate)
        erased = set(self.erased_customers())
        store.outbox[:] = [
            dataclasses.replace(e, payload={})
            if e.aggregate_type == "Customer" and e.aggregate_id in erased
            else e
            for e in store.outbox
        ]
        position = store.head
        for version, event in self.pending_events():
            position += 1
            store.outbox.append(
                StoredEvent(
                    position=position,
                    aggregate_type=event.aggregate_type,
                    aggregate_id=event.aggregate_id,
                    aggregate_version=version,
                    event_type=event.event_type,
                    payload=event.payload(),
                    occurred_at=now,
                    correlation_id=correlation_id,
                    actor_role=actor.role,
                    actor_subject=actor.subject,
                )
            )
        if remember is not None:
            # Expired keys give way, this one included.
            for key in [k for k, v in store.idempotency_keys.items() if v.expires_at <= now]:
                del store.idempotency_keys[key]
            store.idempotency_keys[(remember.scope, remember.key)] = StoredKey(
                remember.request_hash,
                copy.deepcopy({**remember.result, "position": position}),
                remember.expires_at,
            )
        store.commits += 1
        self.committed = True
        for tracked in self.repositories():
            for aggregate in tracked.seen.values():
                aggregate.pending.clear()
        after = store._take_after_hook()
        if after is not None:
            await after()
        return position

    @staticmethod
    def _changed(repo: Repository[Any], table: dict[str, Any]) -> Iterator[Aggregate]:
        for aggregate in repo.seen.values():
            if aggregate.id in repo.new:
                if aggregate.id in table:
                    raise DuplicateId(f"{type(aggregate).__name__} {aggregate.id} exists")
                yield aggregate
                continue
            loaded = repo.loaded_versions[aggregate.id]
            if aggregate.version == loaded:
                continue  # untouched
            stored = table.get(aggregate.id)
            if stored is None or stored.version != loaded:
                # The version it ran into, as SqlUnitOfWork reports it (None: the row is gone).
                actual = None if stored is None else stored.version
                raise ConcurrencyConflict(type(aggregate).__name__, aggregate.id, loaded, actual)
            yield aggregate

    @staticmethod
    def _check_unique(
        saving: list[Aggregate], table: dict[str, Any], attribute: str, code: str, message: str
    ) -> None:
        claimed: dict[Any, str] = {}
        for aggregate in saving:
            value = getattr(aggregate, attribute)
            if value is None:
                continue  # an erased customer's email: NULLs never collide
            others = [
                key
                for key, stored in table.items()
                if key != aggregate.id and getattr(stored, attribute) == value
            ]
            if others or claimed.get(value, aggregate.id) != aggregate.id:
                raise AlreadyExists(message.format(value), field=attribute, code=code)
            claimed[value] = aggregate.id

    async def rollback(self) -> None:
        # Nothing reaches the store before commit, so there is nothing to undo.
        if not self.committed:
            self.rolled_back = True

    async def recall(self, scope: str, key: str, now: datetime) -> Remembered | None:
        stored = self.store.idempotency_keys.get((scope, key))
        if stored is None or stored.expires_at <= now:
            return None
        return Remembered(request_hash=stored.request_hash, result=copy.deepcopy(stored.result))


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def sequential_ids(prefix: str = "id") -> Callable[[], str]:
    """id-1, id-2, ...: predictable ids for new aggregates."""
    counter = 0

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}-{counter}"

    return new_id
