"""Many queries parked on consistency tokens cost nothing and stop nobody.

Every wait parks on the process's one watcher (readmodel/progress.py): no
connection is held while parked, other queries and mutations go on, and each
parked query answers at its documented bound at the latest, or at once when
its token is beyond the outbox head, or as soon as the read side gets there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry

from api.bootstrap import Bicameral, build
from api.context import Context
from api.schema import build_schema
from api.settings import Settings
from tests.identities import ADMIN

pytestmark = pytest.mark.elasticsearch

PARKED = 40
# The documented bound of these tests' deployments (CONSISTENCY_TIMEOUT).
BOUND = 4.0
# Generous: only a hang (a pool starved for 30 s) can exceed it.
SLACK = 6.0

CREATE = """
mutation Create($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { consistencyToken product { id } }
    ... on Error { code message }
  }
}
"""

PRODUCTS = """
query Products($token: String) {
  products(first: 5, consistencyToken: $token) { totalCount }
}
"""


@pytest.fixture
async def parking(
    settings: Settings, engine: Any, elasticsearch_url: str
) -> AsyncIterator[Bicameral]:
    """The app with the documented bound; the test runs the worker when it wants to."""
    app = build(dataclasses.replace(settings, consistency_timeout=BOUND))
    await app.start(subscriptions=False)
    yield app
    await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
    await app.stop()


@pytest.fixture
def schema() -> strawberry.Schema:
    return build_schema()


async def execute(schema: strawberry.Schema, app: Bicameral, query: str, **variables: Any) -> Any:
    result = await schema.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert result.errors is None, result.errors
    return result


async def create(schema: strawberry.Schema, app: Bicameral, sku: str) -> int:
    result = await execute(
        schema,
        app,
        CREATE,
        input={"sku": sku, "name": f"Parked {sku}", "price": 100, "currency": "EUR"},
    )
    payload = result.data["createProduct"]
    assert payload["__typename"] == "CreateProductSuccess", payload
    return int(payload["consistencyToken"])


def stale(result: Any) -> bool:
    return bool((result.extensions or {}).get("consistency", {}).get("stale"))


async def park(
    schema: strawberry.Schema, app: Bicameral, token: int
) -> tuple[list[asyncio.Task[Any]], list[int]]:
    """PARKED queries on `token`; and, in the order they finish, their numbers."""
    finished: list[int] = []

    async def one(n: int) -> Any:
        result = await execute(schema, app, PRODUCTS, token=str(token))
        finished.append(n)
        return result

    tasks = [asyncio.create_task(one(n)) for n in range(PARKED)]
    # Until every one of them has registered its wait with the watcher.
    async with asyncio.timeout(SLACK):
        while len(app.progress._waiters) < PARKED and not finished:
            await asyncio.sleep(0.01)
    return tasks, finished


async def test_parked_waits_hold_no_connection_and_others_are_answered_meanwhile(
    schema: strawberry.Schema, parking: Bicameral
) -> None:
    app = parking
    await create(schema, app, "P-0")
    await app.worker.run_until_caught_up()
    token = await create(schema, app, "P-1")  # the worker does not run again: never reached

    tasks, finished = await park(schema, app, token)
    assert len(app.progress._waiters) == PARKED  # the premise: all of them parked
    # Parked, they hold no pooled connection (the watcher takes one only to read).
    assert app.engine.pool.checkedout() <= 1  # type: ignore[attr-defined]

    async with asyncio.timeout(SLACK):
        plain = await execute(schema, app, PRODUCTS)
        other = await create(schema, app, "P-2")
    assert plain.data["products"]["totalCount"] == 1
    assert other > token
    assert finished == []  # both answered while every parked query still waited

    async with asyncio.timeout(BOUND + SLACK):
        results = await asyncio.gather(*tasks)
    assert all(stale(r) for r in results)
    assert all(r.data["products"]["totalCount"] == 1 for r in results)
    assert app.progress._waiters == set()


async def test_parked_waits_answer_as_soon_as_the_read_side_reaches_their_token(
    schema: strawberry.Schema, parking: Bicameral
) -> None:
    app = parking
    await create(schema, app, "R-0")
    await app.worker.run_until_caught_up()
    token = await create(schema, app, "R-1")

    tasks, finished = await park(schema, app, token)
    assert finished == []
    await app.worker.run_until_caught_up()  # its listener pokes the watcher

    async with asyncio.timeout(BOUND + SLACK):
        results = await asyncio.gather(*tasks)
    assert not any(stale(r) for r in results)
    assert all(r.data["products"]["totalCount"] == 2 for r in results)


async def test_a_token_beyond_the_outbox_head_answers_stale_at_once(
    schema: strawberry.Schema, parking: Bicameral
) -> None:
    app = parking
    # A bound far beyond the hang detector's: only the head check can answer in time.
    object.__setattr__(app.settings, "consistency_timeout", 600.0)
    head = await create(schema, app, "H-0")
    await app.worker.run_until_caught_up()

    async with asyncio.timeout(SLACK):
        results = await asyncio.gather(
            *(execute(schema, app, PRODUCTS, token=str(head + 1_000_000)) for _ in range(PARKED))
        )
    for result in results:
        (read,) = result.extensions["consistency"]["reads"]
        assert (read["token"], read["reached"]) == (str(head + 1_000_000), str(head))
    assert all(r.data["products"]["totalCount"] == 1 for r in results)


async def test_many_concurrent_read_model_questions_share_their_reads_and_starve_nobody(
    schema: strawberry.Schema, parking: Bicameral
) -> None:
    app = parking
    await create(schema, app, "S-0")
    await app.worker.run_until_caught_up()

    # Each lag read holds two pooled connections at once: forty unshared reads
    # would hold every connection of the pool and wait for more.
    async with asyncio.timeout(SLACK):
        statuses = await asyncio.gather(
            *(execute(schema, app, "{ readModel { indexedUpTo } }") for _ in range(PARKED)),
            create(schema, app, "S-1"),
        )
    *reads, token = statuses
    assert all(int(r.data["readModel"]["indexedUpTo"]) > 0 for r in reads)
    assert token > int(reads[0].data["readModel"]["indexedUpTo"])
