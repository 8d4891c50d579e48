"""The command service: idempotency keys, retries after lost races and lost connections,
and request hashes."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from domain import commands as c
from domain.errors import AlreadyExists, ConcurrencyConflict, Forbidden, NotFound
from domain.stock import InsufficientStock
from tests.unit.fakes import FakeClock, FakeStore, FakeUnitOfWork, sequential_ids
from writemodel.access import SYSTEM, Actor
from writemodel.service import CommandService, IdempotencyKeyReused, request_hash
from writemodel.unit_of_work import CommitOutcomeUnknown, ConnectionLost, Remembered

TTL = timedelta(hours=24)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(store: FakeStore, clock: FakeClock) -> CommandService:
    return CommandService(
        lambda: FakeUnitOfWork(store), clock=clock, new_id=sequential_ids(), idempotency_ttl=TTL
    )


@pytest.fixture
async def product_id(service: CommandService) -> str:
    outcome = await service.execute(
        c.CreateProduct(sku="A", name="A", price=100, currency="EUR", initial_stock=10),
        actor=SYSTEM,
    )
    return str(outcome.snapshot["id"])


def receive(product_id: str, quantity: int = 5, expected_version: int | None = None) -> c.Command:
    return c.ReceiveStock(
        product_id=product_id, quantity=quantity, expected_version=expected_version
    )


# --- idempotency ---


async def test_a_repeated_idempotency_key_replays_the_first_result_and_writes_nothing(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    first = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)
    state = store.state()

    again = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    assert first.replayed is False
    assert again.replayed is True
    assert (again.kind, again.snapshot, again.position) == (
        first.kind,
        first.snapshot,
        first.position,
    )
    assert store.state() == state
    assert store.stocks[product_id].on_hand == 15


async def test_a_replay_answers_the_first_position_even_after_later_writes(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    first = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)
    await service.execute(receive(product_id, quantity=1), actor=SYSTEM)

    again = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    assert again.position == first.position < store.head
    assert again.snapshot["stock"]["on_hand"] == 15


async def test_reusing_a_key_with_a_different_input_is_refused(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    await service.execute(receive(product_id, quantity=5), idempotency_key="k1", actor=SYSTEM)
    state = store.state()

    with pytest.raises(IdempotencyKeyReused) as caught:
        await service.execute(receive(product_id, quantity=6), idempotency_key="k1", actor=SYSTEM)

    assert (caught.value.code, caught.value.field) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    assert store.state() == state


async def test_reusing_a_key_for_another_kind_of_command_is_refused(
    service: CommandService, product_id: str
) -> None:
    await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            c.DiscontinueProduct(product_id=product_id), idempotency_key="k1", actor=SYSTEM
        )


async def test_a_key_is_remembered_until_its_time_to_live_runs_out(
    service: CommandService, store: FakeStore, clock: FakeClock, product_id: str
) -> None:
    await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    clock.advance(TTL - timedelta(seconds=1))
    replay = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)
    clock.advance(timedelta(seconds=1))
    fresh = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    assert replay.replayed is True
    assert fresh.replayed is False
    assert store.stocks[product_id].on_hand == 20
    assert store.idempotency_keys[("system", "k1")].expires_at == clock.now + TTL


async def test_an_expired_key_may_be_used_with_a_different_input(
    service: CommandService, store: FakeStore, clock: FakeClock, product_id: str
) -> None:
    await service.execute(receive(product_id, quantity=5), idempotency_key="k1", actor=SYSTEM)
    clock.advance(TTL)

    outcome = await service.execute(
        receive(product_id, quantity=6), idempotency_key="k1", actor=SYSTEM
    )

    assert outcome.replayed is False
    assert store.stocks[product_id].on_hand == 21


async def test_a_refused_command_does_not_use_up_its_key(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    with pytest.raises(NotFound):
        await service.execute(receive("nope"), idempotency_key="k1", actor=SYSTEM)

    outcome = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    assert outcome.replayed is False
    assert ("system", "k1") in store.idempotency_keys


async def test_a_remembered_result_carries_the_position_of_its_last_event(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    outcome = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    remembered = store.idempotency_keys[("system", "k1")]
    assert remembered.result == {
        "kind": "Product",
        "snapshot": outcome.snapshot,
        "position": outcome.position,
    }
    assert remembered.request_hash == request_hash(receive(product_id))


async def test_a_command_that_changes_nothing_remembers_the_head(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    head = store.head

    outcome = await service.execute(
        c.ChangePrice(product_id=product_id, price=100), idempotency_key="same-price", actor=SYSTEM
    )

    assert outcome.position == head
    assert store.idempotency_keys[("system", "same-price")].result["position"] == head


# --- retries after a lost race ---


async def test_an_unguarded_command_is_retried_after_a_concurrent_write(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    async def another_writer() -> None:
        await service.execute(receive(product_id, quantity=100), actor=SYSTEM)

    store.before_next_commit(another_writer)

    outcome = await service.execute(receive(product_id, quantity=5), actor=SYSTEM)

    assert store.stocks[product_id].on_hand == 115  # both writes count, neither is lost
    assert outcome.snapshot["stock"]["on_hand"] == 115
    received = [e.payload["quantity"] for e in store.outbox if e.event_type == "StockReceived"]
    assert received == [10, 100, 5]
    assert outcome.position == store.head


async def test_a_retried_order_sees_the_stock_another_order_took(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    customer = await service.execute(
        c.RegisterCustomer(email="a@example.com", name="A"), actor=SYSTEM
    )
    order = c.PlaceOrder(
        customer_id=str(customer.snapshot["id"]), lines=(c.OrderLineRequest("A", 6),)
    )

    async def another_order() -> None:
        await service.execute(order, actor=SYSTEM)

    store.before_next_commit(another_order)

    with pytest.raises(InsufficientStock) as caught:
        await service.execute(order, actor=SYSTEM)

    assert caught.value.field == "lines.0.quantity"
    assert store.stocks[product_id].reserved == 6
    assert len(store.orders) == 1


async def test_a_command_that_names_its_version_is_not_retried(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    async def another_writer() -> None:
        await service.execute(receive(product_id, quantity=100), actor=SYSTEM)

    store.before_next_commit(another_writer)
    commits = store.commits

    with pytest.raises(ConcurrencyConflict):
        await service.execute(receive(product_id, quantity=5, expected_version=1), actor=SYSTEM)

    assert store.commits == commits + 1  # only the other writer's
    assert store.stocks[product_id].on_hand == 110


async def test_a_command_that_keeps_losing_gives_up_after_the_last_attempt(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    attempts = 0

    async def another_writer() -> None:
        nonlocal attempts
        attempts += 1
        await service.execute(receive(product_id, quantity=1), actor=SYSTEM)
        store.before_next_commit(another_writer)  # after, or its own commit would run it

    store.before_next_commit(another_writer)

    with pytest.raises(ConcurrencyConflict):
        await service.execute(receive(product_id, quantity=5), actor=SYSTEM)

    assert attempts == CommandService.max_attempts
    assert store.stocks[product_id].on_hand == 10 + CommandService.max_attempts


async def test_a_request_that_loses_the_race_for_its_key_replays_the_winner(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    async def same_request() -> None:
        await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    store.before_next_commit(same_request)

    outcome = await service.execute(receive(product_id), idempotency_key="k1", actor=SYSTEM)

    assert outcome.replayed is True
    assert store.stocks[product_id].on_hand == 15  # received once


async def test_a_command_on_untouched_rows_commits_beside_a_concurrent_write(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    other = await service.execute(
        c.CreateProduct(sku="B", name="B", price=1, currency="EUR"), actor=SYSTEM
    )

    async def another_writer() -> None:
        await service.execute(receive(str(other.snapshot["id"]), quantity=3), actor=SYSTEM)

    store.before_next_commit(another_writer)
    commits = store.commits

    await service.execute(receive(product_id, quantity=5, expected_version=1), actor=SYSTEM)

    assert store.commits == commits + 2
    assert store.stocks[product_id].on_hand == 15


async def test_a_create_that_loses_the_race_for_its_key_replays_the_winner(
    service: CommandService, store: FakeStore
) -> None:
    create = c.CreateProduct(sku="NEW", name="New", price=1, currency="EUR")

    async def same_request() -> None:
        await service.execute(create, idempotency_key="k1", actor=SYSTEM)

    store.before_next_commit(same_request)

    outcome = await service.execute(create, idempotency_key="k1", actor=SYSTEM)

    assert outcome.replayed is True
    assert len(store.products) == 1


async def test_a_taken_sku_refused_at_commit_does_not_use_up_its_key(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    taken = c.CreateProduct(sku="a", name="Again", price=1, currency="EUR")

    with pytest.raises(AlreadyExists) as caught:
        await service.execute(taken, idempotency_key="k1", actor=SYSTEM)

    assert (caught.value.code, caught.value.field) == ("SKU_TAKEN", "sku")
    assert not any(key == "k1" for _scope, key in store.idempotency_keys)
    assert len(store.products) == 1


async def test_a_request_refused_because_its_twin_committed_first_replays_the_twin(
    store: FakeStore, clock: FakeClock
) -> None:
    """The twin (same key, same input) commits after this request's recall found no
    key and before its own check: the email is taken, by the client's own write."""
    register = c.RegisterCustomer(email="zoe@example.com", name="Zoe")
    twin_ran = False

    class TwinCommitsAfterRecall(FakeUnitOfWork):
        async def recall(self, scope: str, key: str, now: datetime) -> Remembered | None:
            nonlocal twin_ran
            found = await super().recall(scope, key, now)
            if not twin_ran:
                twin_ran = True
                await service.execute(register, idempotency_key="k1", actor=SYSTEM)
            return found

    service = CommandService(
        lambda: TwinCommitsAfterRecall(store), clock=clock, new_id=sequential_ids()
    )

    outcome = await service.execute(register, idempotency_key="k1", actor=SYSTEM)

    assert twin_ran
    assert outcome.replayed is True
    assert len(store.customers) == 1


async def test_a_refusal_with_a_key_and_no_twin_is_still_a_refusal(
    service: CommandService, store: FakeStore
) -> None:
    await service.execute(c.RegisterCustomer(email="zoe@example.com", name="Zoe"), actor=SYSTEM)

    with pytest.raises(AlreadyExists):
        await service.execute(
            c.RegisterCustomer(email="zoe@example.com", name="Other"),
            idempotency_key="k2",
            actor=SYSTEM,
        )

    assert len(store.customers) == 1


# --- retries after a lost connection ---


async def lose_the_connection() -> None:
    raise ConnectionLost("server closed the connection unexpectedly")


async def lose_the_answer_to_commit() -> None:
    raise CommitOutcomeUnknown("connection was closed in the middle of operation")


def quantities_received(store: FakeStore) -> list[int]:
    return [e.payload["quantity"] for e in store.outbox if e.event_type == "StockReceived"]


async def test_a_command_whose_connection_broke_before_commit_runs_again(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    store.before_next_commit(lose_the_connection)

    outcome = await service.execute(
        receive(product_id, quantity=5, expected_version=1), actor=SYSTEM
    )

    assert outcome.snapshot["stock"]["on_hand"] == 15
    assert quantities_received(store) == [10, 5]


async def test_a_command_that_keeps_losing_its_connection_gives_up(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    attempts = 0

    async def lose_it_again() -> None:
        nonlocal attempts
        attempts += 1
        store.before_next_commit(lose_it_again)
        await lose_the_connection()

    store.before_next_commit(lose_it_again)
    state = store.state()

    with pytest.raises(ConnectionLost):
        await service.execute(receive(product_id), actor=SYSTEM)

    assert attempts == 1 + CommandService.max_reconnects
    assert store.state() == state


async def test_a_commit_whose_answer_was_lost_is_not_run_again_without_a_key(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    store.after_next_commit(lose_the_answer_to_commit)

    with pytest.raises(CommitOutcomeUnknown):
        await service.execute(receive(product_id, quantity=5), actor=SYSTEM)

    # It did commit: running it again would have received the delivery twice.
    assert store.stocks[product_id].on_hand == 15
    assert quantities_received(store) == [10, 5]


async def test_a_commit_whose_answer_was_lost_is_answered_by_its_idempotency_key(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    store.after_next_commit(lose_the_answer_to_commit)

    outcome = await service.execute(
        receive(product_id, quantity=5), idempotency_key="k1", actor=SYSTEM
    )

    assert outcome.replayed is True  # the key held the first attempt's result
    assert outcome.snapshot["stock"]["on_hand"] == 15
    assert quantities_received(store) == [10, 5]


async def test_a_commit_that_was_lost_with_its_answer_applies_by_its_idempotency_key(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    store.before_next_commit(lose_the_answer_to_commit)

    outcome = await service.execute(
        receive(product_id, quantity=5), idempotency_key="k1", actor=SYSTEM
    )

    assert outcome.replayed is False  # the key held nothing: the second attempt applied
    assert outcome.snapshot["stock"]["on_hand"] == 15
    assert quantities_received(store) == [10, 5]


# --- request hashes ---


def test_equal_commands_hash_alike() -> None:
    lines = (c.OrderLineRequest("A", 1), c.OrderLineRequest("B", 2))
    one = c.PlaceOrder(customer_id="c1", lines=lines)
    two = c.PlaceOrder(customer_id="c1", lines=tuple(lines))

    assert request_hash(one) == request_hash(two)
    assert len(request_hash(one)) == 64


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (c.ReceiveStock("p1", 5), c.ReceiveStock("p1", 6)),
        (c.ReceiveStock("p1", 5), c.ReceiveStock("p2", 5)),
        (c.ReceiveStock("p1", 5), c.ReceiveStock("p1", 5, expected_version=1)),
        (c.PayOrder("o1"), c.ShipOrder("o1")),
        (
            c.PlaceOrder("c1", (c.OrderLineRequest("A", 1),)),
            c.PlaceOrder("c1", (c.OrderLineRequest("A", 2),)),
        ),
    ],
    ids=["quantity", "target", "expected-version", "command-type", "nested-line"],
)
def test_different_commands_hash_differently(one: c.Command, two: c.Command) -> None:
    assert request_hash(one) != request_hash(two)


def test_a_request_hash_is_a_digest_of_the_command_name_and_input() -> None:
    # Stored hashes must match after a restart: no id(), no randomised hash().
    command = c.RegisterCustomer(email="a@example.com", name="A")

    body = b'{"command": "RegisterCustomer", "input": {"email": "a@example.com", "name": "A"}}'
    assert request_hash(command) == hashlib.sha256(body).hexdigest()


# --- idempotency keys are scoped to the actor ---

ANN = Actor("staff", subject="ann", issuer="tests")
BOB = Actor("staff", subject="bob", issuer="tests")


async def test_two_actors_using_the_same_key_get_independent_results(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    ann = await service.execute(receive(product_id, 5), idempotency_key="k", actor=ANN)
    bob = await service.execute(receive(product_id, 5), idempotency_key="k", actor=BOB)
    ann_again = await service.execute(receive(product_id, 5), idempotency_key="k", actor=ANN)

    assert (ann.replayed, bob.replayed, ann_again.replayed) == (False, False, True)
    assert bob.position > ann.position
    assert ann_again.position == ann.position
    assert store.stocks[product_id].on_hand == 20
    assert len(store.idempotency_keys) == 2


async def test_another_actors_key_with_another_input_is_not_a_reuse(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    await service.execute(receive(product_id, 5), idempotency_key="k", actor=ANN)

    bob = await service.execute(receive(product_id, 7), idempotency_key="k", actor=BOB)

    assert bob.replayed is False
    assert store.stocks[product_id].on_hand == 22


@pytest.mark.parametrize(
    "lookalike",
    [
        Actor("admin", subject="system"),
        Actor("admin", subject="system", issuer="system"),
        Actor("admin", subject="anonymous"),
    ],
    ids=repr,
)
def test_no_token_holder_shares_the_system_actors_keys(lookalike: Actor) -> None:
    assert lookalike.idempotency_scope not in {"system", "anonymous"}
    assert SYSTEM.idempotency_scope == "system"


def test_the_same_subject_from_two_issuers_has_two_scopes() -> None:
    one = Actor("staff", subject="ann", issuer="https://one.example")
    two = Actor("staff", subject="ann", issuer="https://two.example")

    assert one.idempotency_scope != two.idempotency_scope


async def test_a_refused_role_is_refused_before_its_key_could_replay(
    service: CommandService, store: FakeStore, product_id: str
) -> None:
    # A customer with the same subject as a staff member who used the key: the
    # scope matches, but the role check comes first.
    await service.execute(receive(product_id), idempotency_key="k", actor=ANN)
    demoted = Actor("customer", subject="ann", issuer="tests", customer_id="cu")

    with pytest.raises(Forbidden):
        await service.execute(receive(product_id), idempotency_key="k", actor=demoted)
