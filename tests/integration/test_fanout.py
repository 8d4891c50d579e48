"""Fan-out groups in process, on both databases (api/fanout.py): one execution per
change for every member, each member's changes once and in order from where it
joined, a slow member ended with its resume point while the others go on."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.bootstrap import Bicameral, build
from api.context import Context
from api.fanout import Member, Shared, fanout_of, sharing_key
from api.identity import Identity, Role
from api.schema import build_schema
from api.settings import Settings
from tests.identities import ADMIN
from tests.integration.test_subscriptions import create, subscribe, take

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()

CHANGES = "subscription { changes(types: [PRODUCT]) { id kind position } }"
RESUME = """subscription($after: String) {
  changes(types: [PRODUCT], after: $after) { id kind position } }"""

KEY = sharing_key(CHANGES, None, None, ADMIN)


@pytest.fixture
async def live(settings: Settings, engine: object) -> AsyncIterator[Bicameral]:
    app = build(
        dataclasses.replace(settings, feed_poll_interval=0.2),
        embedded_worker=True,
    )
    await app.start()
    yield app
    await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
    await app.stop()


class Runs:
    """The group's run of CHANGES, counted: how many executions the members cost."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, context: Shared) -> Any:
        self.count += 1
        return await SCHEMA.subscribe(CHANGES, context_value=context)


def encode(payload: object) -> str:
    import json

    return json.dumps(payload)


async def collect(member: Member, sent: list[tuple[int, str]], gate: asyncio.Event | None = None):
    async def send(position: int, payload: str) -> None:
        if gate is not None:
            await gate.wait()
        sent.append((position, payload))

    return await member.deliver(send)


async def test_many_members_of_one_key_share_one_run_and_each_hear_every_change_once_in_order(
    live: Bicameral,
) -> None:
    fanout, runs = fanout_of(live), Runs()
    assert KEY is not None
    members = [fanout.join(KEY, ADMIN, runs, encode, limit=100) for _ in range(200)]
    heard: list[list[tuple[int, str]]] = [[] for _ in members]
    tasks = [asyncio.create_task(collect(m, h)) for m, h in zip(members, heard, strict=True)]
    await asyncio.sleep(0.3)  # the group's run subscribes to the hub
    created = [await create(live, f"MANY-{i}") for i in range(3)]

    async with asyncio.timeout(30):
        while any(len(h) < 3 for h in heard):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # nothing more may follow
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for member in members:
        fanout.leave(member)

    assert runs.count == 1
    positions = [o.position for o in created]
    for h in heard:
        assert [p for p, _ in h] == positions
        # One payload object per change, the same for every member: encoded once.
    assert len({id(h[0][1]) for h in heard}) == 1
    await asyncio.sleep(0.1)
    assert not fanout.groups and fanout.members == 0
    assert not live.hub.subscribers


async def test_a_member_that_joins_later_hears_only_what_came_after_it_joined(
    live: Bicameral,
) -> None:
    fanout, runs = fanout_of(live), Runs()
    assert KEY is not None
    first = fanout.join(KEY, ADMIN, runs, encode, limit=100)
    first_heard: list[tuple[int, str]] = []
    first_task = asyncio.create_task(collect(first, first_heard))
    await asyncio.sleep(0.3)
    early = await create(live, "LATE-0")
    async with asyncio.timeout(30):
        while len(first_heard) < 1:
            await asyncio.sleep(0.02)
    second = fanout.join(KEY, ADMIN, runs, encode, limit=100)
    second_heard: list[tuple[int, str]] = []
    second_task = asyncio.create_task(collect(second, second_heard))
    later = await create(live, "LATE-1")
    async with asyncio.timeout(30):
        while len(second_heard) < 1 or len(first_heard) < 2:
            await asyncio.sleep(0.02)
    for task in (first_task, second_task):
        task.cancel()
    await asyncio.gather(first_task, second_task, return_exceptions=True)
    fanout.leave(first)
    fanout.leave(second)

    assert runs.count == 1
    assert [p for p, _ in first_heard] == [early.position, later.position]
    assert [p for p, _ in second_heard] == [later.position]


async def test_a_slow_member_is_ended_with_its_resume_point_and_the_others_hear_everything(
    live: Bicameral,
) -> None:
    fanout, runs = fanout_of(live), Runs()
    assert KEY is not None
    fast = fanout.join(KEY, ADMIN, runs, encode, limit=100)
    slow = fanout.join(KEY, ADMIN, runs, encode, limit=3)
    gate = asyncio.Event()  # the slow member's socket takes nothing until it is set
    fast_heard: list[tuple[int, str]] = []
    slow_heard: list[tuple[int, str]] = []
    fast_task = asyncio.create_task(collect(fast, fast_heard))
    slow_task = asyncio.create_task(collect(slow, slow_heard, gate))
    await asyncio.sleep(0.3)
    created = [await create(live, f"SLOWF-{i}") for i in range(10)]
    positions = [o.position for o in created]

    async with asyncio.timeout(30):
        while len(fast_heard) < 10:
            await asyncio.sleep(0.02)
        gate.set()
        ending = await slow_task
    fast_task.cancel()
    await asyncio.gather(fast_task, return_exceptions=True)
    fanout.leave(fast)
    fanout.leave(slow)

    assert [p for p, _ in fast_heard] == positions
    assert ending == "behind"
    # It sent what it had taken before the deque filled, and resumes after that.
    assert [p for p, _ in slow_heard] == positions[: len(slow_heard)]
    assert slow.last == (slow_heard[-1][0] if slow_heard else slow.joined)
    errors = slow.fell_behind(lambda at: f'resume with after: "{at}"')
    assert errors[0]["extensions"]["code"] == "SUBSCRIBER_FELL_BEHIND"
    assert f'"{slow.last}"' in errors[0]["message"]

    # Resuming there replays the rest exactly once.
    stream = await subscribe(live, RESUME, after=str(slow.last))
    rest = await take(stream, len(positions) - len(slow_heard))
    await stream.aclose()
    assert [int(n["position"]) for n in rest] == positions[len(slow_heard) :]


def test_the_sharing_key_holds_the_role_and_the_customer_and_nothing_else_of_the_caller() -> None:
    ann = Identity(Role.CUSTOMER, subject="a", customer_id="ann")
    ann_again = Identity(Role.CUSTOMER, subject="a-other-device", customer_id="ann")
    bob = Identity(Role.CUSTOMER, subject="b", customer_id="bob")
    staff = Identity(Role.STAFF, subject="s")
    query = "subscription($id: ID!) { orderChanged(id: $id) { id } }"

    def key(identity: Identity, **variables: Any) -> object:
        return sharing_key(query, None, variables or {"id": "o1"}, identity)

    assert key(ann) == key(ann_again)
    assert key(ann) != key(bob)
    assert key(ann) != key(staff)
    assert key(ann) != key(ann, id="o2")
    # Variables in any key order are the same variables.
    assert sharing_key(query, None, {"a": 1, "b": 2}, ann) == sharing_key(
        query, None, {"b": 2, "a": 1}, ann
    )


def test_a_group_runs_as_an_identity_built_from_its_key_alone() -> None:
    from api.fanout import shared_identity

    caller = Identity(Role.CUSTOMER, subject="a", issuer="i", customer_id="ann")
    shared = shared_identity(caller)
    assert (shared.role, shared.customer_id) == (Role.CUSTOMER, "ann")
    assert shared.subject is None and shared.issuer is None and shared.expires_at is None
    assert isinstance(Shared(app=None, request=None), Context)  # type: ignore[arg-type]
