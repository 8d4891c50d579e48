"""What a failure of the write database means: its name (lost, unavailable, or not
the database's at all), and what the command service makes of it.

The real failures (a stopped, crashed, exhausted or locked database) are in
tests/integration/test_write_faults.py; here, the classification of the errors
the drivers raise, and the service's rules, over the fake unit of work.
"""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from domain import commands as c
from tests.unit.fakes import FakeClock, FakeStore, FakeUnitOfWork, sequential_ids
from writemodel.access import SYSTEM
from writemodel.database import fault_kind
from writemodel.service import CommandService
from writemodel.unit_of_work import (
    CommitOutcomeUnknown,
    ConnectionLost,
    TransientConflict,
    UnitOfWork,
    WriteDatabaseUnavailable,
)


class ServerError(Exception):
    """What asyncpg raises when the server answers with an error: it has a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"server said {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(orig: Exception, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    return sa_exc.OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), "lost"),
        (ConnectionResetError(104, "Connection reset by peer"), "lost"),
        (TimeoutError(), "lost"),
        (wrapped(ServerError("57P03")), "lost"),  # the database system is shutting down
        (wrapped(ServerError("57P01")), "lost"),  # terminating connection: admin command
        (wrapped(ServerError("08006")), "lost"),
        (wrapped(ValueError("whatever"), invalidated=True), "lost"),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"), "unavailable"),
        (wrapped(ServerError("57014")), "unavailable"),  # statement timeout
        (wrapped(ServerError("55P03")), "unavailable"),  # lock timeout
        (wrapped(ServerError("53300")), "unavailable"),  # too many connections
        (wrapped(sqlite3.OperationalError("database is locked")), "unavailable"),
        (wrapped(ServerError("23505")), None),  # a unique violation is the statement's
        (wrapped(ServerError("40001")), None),  # a lost race is retried elsewhere
        (wrapped(sqlite3.OperationalError("no such table: products")), None),
        (ValueError("a bug"), None),
    ],
    ids=lambda value: value if isinstance(value, str | type(None)) else type(value).__name__,
)
def test_each_driver_error_is_named_for_what_it_says_of_the_database(
    error: Exception, kind: str | None
) -> None:
    assert fault_kind(error) == kind


def test_an_error_raised_from_a_database_fault_is_named_by_its_cause() -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as cause:
            raise RuntimeError("the driver's own wrapper") from cause
    except RuntimeError as error:
        assert fault_kind(error) == "lost"


# --- the command service ---


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(store: FakeStore) -> CommandService:
    return CommandService(lambda: FakeUnitOfWork(store), clock=FakeClock(), new_id=sequential_ids())


@pytest.fixture
async def product_id(service: CommandService) -> str:
    outcome = await service.execute(
        c.CreateProduct(sku="A", name="A", price=100, currency="EUR", initial_stock=10),
        actor=SYSTEM,
    )
    return str(outcome.snapshot["id"])


async def test_an_unavailable_database_is_not_retried_and_nothing_is_written(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    attempts = 0

    async def refuse() -> None:
        nonlocal attempts
        attempts += 1
        store.before_next_commit(refuse)
        raise WriteDatabaseUnavailable("connection refused")

    store.before_next_commit(refuse)
    state = store.state()

    with pytest.raises(WriteDatabaseUnavailable):
        await service.execute(c.ReceiveStock(product_id, 5), actor=SYSTEM)

    assert attempts == 1
    assert store.state() == state


class DownAfterTheFirstCommit(FakeUnitOfWork):
    """A unit of work that cannot connect once the store has gone down."""

    down = False

    async def __aenter__(self) -> UnitOfWork:
        if DownAfterTheFirstCommit.down:
            raise WriteDatabaseUnavailable("the database system is shutting down")
        return await super().__aenter__()


async def test_a_retry_by_key_that_cannot_reach_the_database_still_says_the_outcome_is_unknown(
    store: FakeStore, product_id: str
) -> None:
    service = CommandService(lambda: DownAfterTheFirstCommit(store), clock=FakeClock())

    async def lose_the_answer_and_go_down() -> None:
        DownAfterTheFirstCommit.down = True
        raise CommitOutcomeUnknown("connection reset by peer")

    store.after_next_commit(lose_the_answer_and_go_down)

    try:
        with pytest.raises(CommitOutcomeUnknown):
            await service.execute(c.ReceiveStock(product_id, 5), idempotency_key="k1", actor=SYSTEM)
    finally:
        DownAfterTheFirstCommit.down = False

    # The first attempt did commit: "nothing was written" would have been a lie.
    assert store.stocks[product_id].on_hand == 15


async def test_a_command_that_keeps_losing_to_deadlocks_ends_as_unavailable(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    async def deadlock() -> None:
        store.before_next_commit(deadlock)
        raise TransientConflict("deadlock detected")

    store.before_next_commit(deadlock)
    service.max_attempts = 3  # each retry waits a while first
    state = store.state()

    with pytest.raises(WriteDatabaseUnavailable):
        await service.execute(c.ReceiveStock(product_id, 5), actor=SYSTEM)

    assert store.state() == state


class LosesOneConnectionAfterTheFirstCommit(FakeUnitOfWork):
    """After the store's signal, the next unit of work finds its connection dead."""

    dead: int = 0

    async def __aenter__(self) -> UnitOfWork:
        if LosesOneConnectionAfterTheFirstCommit.dead:
            LosesOneConnectionAfterTheFirstCommit.dead -= 1
            raise ConnectionLost("connection reset by peer")
        return await super().__aenter__()


async def test_a_retry_by_key_that_finds_another_dead_connection_still_settles_by_the_key(
    store: FakeStore, product_id: str
) -> None:
    service = CommandService(
        lambda: LosesOneConnectionAfterTheFirstCommit(store), clock=FakeClock()
    )

    async def lose_the_answer() -> None:
        LosesOneConnectionAfterTheFirstCommit.dead = 1
        raise CommitOutcomeUnknown("connection reset by peer")

    store.after_next_commit(lose_the_answer)

    outcome = await service.execute(
        c.ReceiveStock(product_id, 5), idempotency_key="k1", actor=SYSTEM
    )

    assert outcome.replayed is True  # the first did commit, and the key said so
    assert store.stocks[product_id].on_hand == 15
