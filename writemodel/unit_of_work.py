"""The command layer's port: a unit of work over the four aggregates' repositories.

A handler loads and adds aggregates through the repositories; `commit` saves
every aggregate it touched and appends their events to the outbox in ONE
transaction, or nothing at all. `SqlUnitOfWork` is the adapter; unit tests
use a fake that subclasses these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.events import CustomerErased, Event
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from writemodel.access import Actor

__all__ = [
    "CommitOutcomeUnknown",
    "ConnectionLost",
    "CustomerRepository",
    "IdempotencyRace",
    "OrderRepository",
    "ProductRepository",
    "Remember",
    "Remembered",
    "Repository",
    "StockRepository",
    "TransientConflict",
    "UnitOfWork",
    "WriteDatabaseUnavailable",
]

A = TypeVar("A", bound=Aggregate)


class Repository(ABC, Generic[A]):
    """Tracks what it hands out, so the unit of work knows what to save."""

    def __init__(self) -> None:
        self.seen: dict[str, A] = {}
        self.new: set[str] = set()
        self.loaded_versions: dict[str, int] = {}

    async def get(self, id: str) -> A | None:
        if id in self.seen:
            return self.seen[id]
        aggregate = await self._load(id)
        if aggregate is not None:
            self._track(aggregate)
        return aggregate

    def add(self, aggregate: A) -> None:
        self.new.add(aggregate.id)
        self.seen[aggregate.id] = aggregate
        self.loaded_versions[aggregate.id] = 0

    def _track(self, aggregate: A) -> None:
        self.seen[aggregate.id] = aggregate
        self.loaded_versions[aggregate.id] = aggregate.version

    def pending(self) -> list[tuple[int, Event]]:
        return [item for aggregate in self.seen.values() for item in aggregate.pending]

    @abstractmethod
    async def _load(self, id: str) -> A | None: ...


class ProductRepository(Repository[Product]):
    async def get_by_sku(self, sku: str) -> Product | None:
        for known in self.seen.values():
            if known.sku == sku:
                return known
        product = await self._load_by_sku(sku)
        if product is not None:
            if product.id in self.seen:
                return self.seen[product.id]
            self._track(product)
        return product

    @abstractmethod
    async def _load_by_sku(self, sku: str) -> Product | None: ...


class StockRepository(Repository[Stock]):
    pass


class CustomerRepository(Repository[Customer]):
    @abstractmethod
    async def email_taken(self, email: str) -> bool: ...

    def erased(self) -> list[str]:
        """Customers erased in this unit of work, by id: their save forgets their
        stored events' data (outbox.forget) in the same transaction."""
        return sorted(
            customer.id
            for customer in self.seen.values()
            if any(isinstance(event, CustomerErased) for _, event in customer.pending)
        )


class OrderRepository(Repository[Order]):
    pass


class TransientConflict(Exception):
    """The database aborted the transaction for a race (a deadlock, a serialization
    failure); nothing was written and the whole command can run again."""


class WriteDatabaseUnavailable(Exception):
    """The write database could not do the work: no connection could be opened or
    taken from the pool, the server is starting or shutting down, a statement or
    lock timed out. Nothing was written; the caller may try again later."""


class ConnectionLost(WriteDatabaseUnavailable):
    """The connection to the database broke before COMMIT was sent: the database
    rolls the transaction back, nothing was written, and the whole command can
    run again on a new connection."""


class CommitOutcomeUnknown(Exception):
    """The connection broke while COMMIT was in flight: the transaction may or may
    not have committed, and nothing on this side can tell which."""


class IdempotencyRace(Exception):
    """Another request stored the same idempotency key first; the caller replays it."""


@dataclass(frozen=True)
class Remembered:
    """A command's first result, stored under its idempotency key."""

    request_hash: str
    result: dict[str, Any]


@dataclass(frozen=True)
class Remember:
    """Asks `commit` to store the command's result under an idempotency key.

    The result gets its `position` inside the transaction, so the key, the
    state and the events land together or not at all."""

    # Whose key it is (`Actor.idempotency_scope`): the stored key is (scope, key).
    scope: str
    key: str
    request_hash: str
    result: dict[str, Any]
    expires_at: datetime


class UnitOfWork(ABC):
    products: ProductRepository
    stocks: StockRepository
    customers: CustomerRepository
    orders: OrderRepository

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    def repositories(self) -> tuple[Repository[Any], ...]:
        return (self.products, self.stocks, self.customers, self.orders)

    def pending_events(self) -> list[tuple[int, Event]]:
        return [item for repo in self.repositories() for item in repo.pending()]

    def erased_customers(self) -> list[str]:
        """Customers erased in this unit of work: `commit` forgets their stored events'
        data (outbox.forget) in the same transaction."""
        return self.customers.erased()

    @abstractmethod
    async def commit(
        self,
        *,
        correlation_id: str,
        now: datetime,
        actor: Actor,
        remember: Remember | None = None,
    ) -> int:
        """Save what changed and append its events, atomically, each event stored
        with the actor who caused it (the audit: outbox.append).

        Returns the consistency position: the command's last event, or the
        outbox head when the command changed nothing. A broken connection is
        reported as ConnectionLost (before COMMIT was sent; loads in the
        handler report it too, as the unit of work exits) or as
        CommitOutcomeUnknown (while COMMIT was in flight); a database that cannot
        be reached or refuses the work as WriteDatabaseUnavailable."""

    @abstractmethod
    async def rollback(self) -> None:
        """Discard everything; harmless after a commit."""

    @abstractmethod
    async def recall(self, scope: str, key: str, now: datetime) -> Remembered | None:
        """The unexpired result stored under an idempotency key of this scope, if any."""
