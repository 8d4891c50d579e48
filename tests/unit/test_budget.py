"""The query budget (api/budget.py): the buckets on a clock the test moves, and the
schema refusing a client over its budget while others go on. Nothing here reads
Elasticsearch: the operations that run are `__typename` and introspection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from starlette.responses import Response
from strawberry.types import ExecutionResult

from api.budget import Buckets, client_key
from api.context import Context
from api.identity import ANONYMOUS, Identity, Role
from api.schema import LIMITS, build_schema
from api.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- the buckets ---


def test_a_new_client_starts_with_a_full_minute_of_budget(clock: Clock) -> None:
    spending = Buckets(clock=clock).spend("a", 100, per_minute=600)

    assert spending.allowed
    assert (spending.capacity, spending.remaining) == (600, 500)


def test_an_operation_costing_more_than_is_left_is_refused_and_charged_nothing(
    clock: Clock,
) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 550, per_minute=600)

    refused = buckets.spend("a", 100, per_minute=600)

    assert not refused.allowed
    assert refused.remaining == 50
    # 50 short at 10 a second.
    assert refused.retry_after == 5


def test_waiting_retry_after_seconds_is_enough_to_get_in(clock: Clock) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 550, per_minute=600)
    refused = buckets.spend("a", 100, per_minute=600)

    clock.now += refused.retry_after

    assert buckets.spend("a", 100, per_minute=600).allowed


def test_the_bucket_refills_at_a_sixtieth_of_the_budget_per_second_up_to_full(
    clock: Clock,
) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 600, per_minute=600)

    clock.now += 3
    assert buckets.spend("a", 0, per_minute=600).remaining == 30
    clock.now += 3600
    assert buckets.spend("a", 0, per_minute=600).remaining == 600


def test_resets_in_says_when_the_bucket_is_full_again(clock: Clock) -> None:
    buckets = Buckets(clock=clock)

    assert buckets.spend("a", 0, per_minute=600).resets_in == 0
    assert buckets.spend("a", 95, per_minute=600).resets_in == 10


def test_a_refused_operation_tells_how_long_to_wait_in_whole_seconds_at_least_one(
    clock: Clock,
) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 599, per_minute=600)  # 1 left

    refused = buckets.spend("a", 2, per_minute=600)

    assert not refused.allowed
    assert refused.retry_after == 1


def test_an_operation_costing_more_than_a_whole_bucket_needs_a_full_one(clock: Clock) -> None:
    buckets = Buckets(clock=clock)

    first = buckets.spend("a", 5000, per_minute=600)
    second = buckets.spend("a", 5000, per_minute=600)
    clock.now += 60

    assert (first.allowed, first.charged, first.remaining) == (True, 600, 0)
    assert (second.allowed, second.retry_after) == (False, 60)
    assert buckets.spend("a", 5000, per_minute=600).allowed


def test_one_clients_spending_leaves_another_clients_bucket_alone(clock: Clock) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 600, per_minute=600)

    assert not buckets.spend("a", 1, per_minute=600).allowed
    assert buckets.spend("b", 600, per_minute=600).allowed


def test_the_buckets_remember_at_most_max_clients(clock: Clock) -> None:
    buckets = Buckets(max_clients=3, clock=clock)

    for key in range(10):
        buckets.spend(key, 1, per_minute=600)

    assert len(buckets) == 3


def test_the_client_seen_longest_ago_is_forgotten_first(clock: Clock) -> None:
    buckets = Buckets(max_clients=2, clock=clock)
    buckets.spend("a", 600, per_minute=600)
    buckets.spend("b", 600, per_minute=600)
    buckets.spend("a", 0, per_minute=600)  # a is seen again: b is now the oldest

    buckets.spend("c", 1, per_minute=600)  # one too many: b goes

    assert not buckets.spend("a", 1, per_minute=600).allowed  # remembered, still empty
    assert buckets.spend("b", 600, per_minute=600).allowed  # forgotten, full again


def test_a_clock_going_backwards_refills_nothing(clock: Clock) -> None:
    buckets = Buckets(clock=clock)
    buckets.spend("a", 600, per_minute=600)

    clock.now -= 100

    assert buckets.spend("a", 0, per_minute=600).remaining == 0


# --- who a client is ---


@dataclass
class Client:
    host: str | None


@dataclass
class FakeRequest:
    client: Client | None


def test_a_caller_with_a_token_is_its_issuer_and_subject_wherever_it_calls_from() -> None:
    alice = Identity(Role.CUSTOMER, subject="alice", issuer="https://id.example")

    assert client_key(alice, FakeRequest(Client("10.0.0.1"))) == client_key(
        alice, FakeRequest(Client("10.0.0.2"))
    )
    assert client_key(alice, FakeRequest(Client("10.0.0.1"))) != client_key(
        Identity(Role.CUSTOMER, subject="alice", issuer="https://other.example"),
        FakeRequest(Client("10.0.0.1")),
    )


def test_an_anonymous_caller_is_its_address() -> None:
    here = client_key(ANONYMOUS, FakeRequest(Client("10.0.0.1")))

    assert here == ("address", "10.0.0.1")
    assert here != client_key(ANONYMOUS, FakeRequest(Client("10.0.0.2")))


def test_callers_whose_address_is_unknown_share_one_bucket() -> None:
    assert client_key(ANONYMOUS, FakeRequest(None)) == client_key(
        ANONYMOUS, FakeRequest(Client(None))
    )


def test_an_operation_run_in_process_without_a_request_is_no_client() -> None:
    assert client_key(ANONYMOUS, None) is None


# --- the settings ---


def test_the_budget_may_be_turned_off_but_not_negative() -> None:
    assert Settings(budget_per_minute=0).budget_per_minute == 0
    with pytest.raises(SettingsError, match="BUDGET_PER_MINUTE"):
        Settings(budget_per_minute=-1)
    with pytest.raises(SettingsError, match="BUDGET_STAFF_MULTIPLIER"):
        Settings(budget_staff_multiplier=0)


def test_the_budget_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUDGET_PER_MINUTE", "1234")
    monkeypatch.setenv("BUDGET_STAFF_MULTIPLIER", "3")

    settings = Settings.from_env()

    assert (settings.budget_per_minute, settings.budget_staff_multiplier) == (1234, 3)


# --- through the schema ---

# Costs 12: `__schema` 1, `types` a list (1 + 10 x 1 for `name`).
TWELVE = "{ __schema { types { name } } }"


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def context(
    settings: Settings,
    host: str = "10.0.0.1",
    identity: Identity = ANONYMOUS,
    response: Any = None,
) -> Context:
    return Context(
        app=App(settings),  # type: ignore[arg-type]
        request=FakeRequest(Client(host)),
        response=response,
        identity=identity,
    )


def codes(result: ExecutionResult) -> list[str]:
    return [(error.extensions or {}).get("code", "") for error in result.errors or ()]


async def test_a_client_over_its_budget_is_refused_with_rate_limited_and_retry_after(
    clock: Clock,
) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20)

    first = await schema.execute(TWELVE, context_value=context(tight))
    second = await schema.execute(TWELVE, context_value=context(tight))

    assert first.errors is None
    assert second.data is None
    assert codes(second) == ["RATE_LIMITED"]
    error = (second.errors or [])[0]
    # 4 short, at 20 a minute: 12 seconds.
    assert (error.extensions or {})["retryAfter"] == 12
    assert "Retry in 12 s" in error.message


async def test_another_client_is_not_affected_by_one_over_its_budget(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20)
    alice = Identity(Role.CUSTOMER, subject="alice", issuer="test")
    bob = Identity(Role.CUSTOMER, subject="bob", issuer="test")
    for _ in range(2):
        await schema.execute(TWELVE, context_value=context(tight, host="10.0.0.1"))
        await schema.execute(TWELVE, context_value=context(tight, identity=alice))

    from_elsewhere = await schema.execute(TWELVE, context_value=context(tight, host="10.0.0.2"))
    as_bob = await schema.execute(TWELVE, context_value=context(tight, identity=bob))
    again = await schema.execute(TWELVE, context_value=context(tight, host="10.0.0.1"))

    assert (from_elsewhere.errors, as_bob.errors) == (None, None)
    assert codes(again) == ["RATE_LIMITED"]


async def test_a_refused_client_gets_in_once_it_has_waited_retry_after(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20)
    await schema.execute(TWELVE, context_value=context(tight))
    refused = await schema.execute(TWELVE, context_value=context(tight))

    clock.now += ((refused.errors or [])[0].extensions or {})["retryAfter"]
    later = await schema.execute(TWELVE, context_value=context(tight))

    assert later.errors is None


async def test_every_answer_carries_the_remaining_budget_beside_its_cost(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20)

    first = await schema.execute(TWELVE, context_value=context(tight))
    refused = await schema.execute(TWELVE, context_value=context(tight))

    assert first.extensions == {
        "cost": {
            "requested": 12,
            "limit": LIMITS["max_cost"],
            "budget": {"perMinute": 20, "remaining": 8, "resetsIn": 36},
        }
    }
    assert (refused.extensions or {})["cost"]["budget"] == {
        "perMinute": 20,
        "remaining": 8,
        "resetsIn": 36,
    }


async def test_over_http_a_refusal_answers_429_with_retry_after(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20)
    accepted, refused = Response(), Response()
    accepted.status_code = refused.status_code = None  # type: ignore[assignment]

    await schema.execute(TWELVE, context_value=context(tight, response=accepted))
    await schema.execute(TWELVE, context_value=context(tight, response=refused))

    assert accepted.status_code is None  # left to the view: 200
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "12")


async def test_a_mutation_over_the_budget_is_not_executed(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=1)
    await schema.execute(TWELVE, context_value=context(tight))  # charged the whole bucket

    # The app has no command layer: executing this would fail with an internal error.
    refused = await schema.execute(
        'mutation { cancelOrder(input: {orderId: "o-1"}) { __typename } }',
        context_value=context(tight),
    )

    assert refused.data is None
    assert codes(refused) == ["RATE_LIMITED"]


async def test_staff_get_their_multiple_of_the_budget(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=20, budget_staff_multiplier=3)
    staff = Identity(Role.STAFF, subject="sam", issuer="test")

    answers = [
        await schema.execute(TWELVE, context_value=context(tight, identity=staff)) for _ in range(6)
    ]

    assert [codes(answer) for answer in answers] == [[]] * 5 + [["RATE_LIMITED"]]
    assert (answers[0].extensions or {})["cost"]["budget"]["perMinute"] == 60


async def test_a_budget_of_zero_meters_nobody(clock: Clock) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    off = Settings(budget_per_minute=0)

    answers = [await schema.execute(TWELVE, context_value=context(off)) for _ in range(5)]

    assert all(answer.errors is None for answer in answers)
    assert "budget" not in (answers[0].extensions or {})["cost"]


async def test_a_document_refused_by_validation_spends_nothing(clock: Clock) -> None:
    buckets = Buckets(clock=clock)
    schema = build_schema(buckets=buckets)
    tight = Settings(budget_per_minute=20)

    invalid = await schema.execute("{ noSuchField }", context_value=context(tight))
    valid = await schema.execute(TWELVE, context_value=context(tight))

    assert codes(invalid) == ["GRAPHQL_VALIDATION_FAILED"]
    assert (valid.extensions or {})["cost"]["budget"]["remaining"] == 8


async def test_a_subscription_over_its_budget_is_refused_when_it_subscribes(
    clock: Clock,
) -> None:
    schema = build_schema(buckets=Buckets(clock=clock))
    tight = Settings(budget_per_minute=1)
    await schema.execute(TWELVE, context_value=context(tight))

    stream = await schema.subscribe(
        'subscription { productChanged(id: "p-1") { position } }', context_value=context(tight)
    )
    results = [result async for result in stream]  # type: ignore[union-attr]

    assert len(results) == 1
    assert codes(results[0]) == ["RATE_LIMITED"]
