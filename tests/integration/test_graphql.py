"""GraphQL over the real services: mutations into the write database, queries
from Elasticsearch, read-your-writes through the consistency token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry

from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from tests.identities import ADMIN

pytestmark = pytest.mark.elasticsearch

CREATE = """
mutation Create($input: CreateProductInput!, $key: String) {
  createProduct(input: $input, idempotencyKey: $key) {
    __typename
    ... on CreateProductSuccess { consistencyToken replayed product { id sku version } }
    ... on Error { code field message }
  }
}
"""

PRODUCT = """
query Product($id: ID!, $token: String) {
  product(id: $id, consistencyToken: $token) {
    id sku name price { amount currency } stock { onHand available inStock } status
  }
}
"""


@pytest.fixture
def schema() -> strawberry.Schema:
    return build_schema()


@pytest.fixture
async def running(app: Bicameral) -> AsyncIterator[Bicameral]:
    """The app with its feed worker running in the background, as `bicameral serve` has it."""
    task = asyncio.create_task(app.worker.run())
    app._worker_task = task
    yield app
    app.worker.stop()
    await asyncio.wait_for(task, timeout=10)
    app._worker_task = None


async def run(schema: strawberry.Schema, app: Bicameral, query: str, **variables: Any) -> Any:
    result = await schema.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert result.errors is None, result.errors
    return result


async def test_a_created_product_is_read_back_with_its_consistency_token(
    schema: strawberry.Schema, running: Bicameral
) -> None:
    created = await run(
        schema,
        running,
        CREATE,
        input={
            "sku": "tea-1",
            "name": "Green teapot",
            "price": 2500,
            "currency": "eur",
            "initialStock": 3,
        },
    )
    payload = created.data["createProduct"]
    assert payload["__typename"] == "CreateProductSuccess"
    assert payload["product"]["sku"] == "TEA-1"

    read = await run(
        schema, running, PRODUCT, id=payload["product"]["id"], token=payload["consistencyToken"]
    )

    assert read.data["product"] == {
        "id": payload["product"]["id"],
        "sku": "TEA-1",
        "name": "Green teapot",
        "price": {"amount": 2500, "currency": "EUR"},
        "stock": {"onHand": 3, "available": 3, "inStock": True},
        "status": "ACTIVE",
    }
    assert not (read.extensions or {}).get("consistency")


async def test_read_your_writes_holds_every_time(
    schema: strawberry.Schema, running: Bicameral
) -> None:
    # The issue asks for 100 out of 100, on each database.
    for i in range(100):
        created = await run(
            schema,
            running,
            CREATE,
            input={"sku": f"LOOP-{i}", "name": f"Loop {i}", "price": 100 + i, "currency": "EUR"},
        )
        payload = created.data["createProduct"]
        read = await run(
            schema,
            running,
            PRODUCT,
            id=payload["product"]["id"],
            token=payload["consistencyToken"],
        )
        assert read.data["product"]["sku"] == f"LOOP-{i}"


async def test_a_read_that_cannot_reach_its_token_answers_stale_and_says_so(
    schema: strawberry.Schema, app: Bicameral
) -> None:
    # No worker runs here: the token can never be reached.
    object.__setattr__(app.settings, "consistency_timeout", 0.2)
    created = await run(
        schema,
        app,
        CREATE,
        input={"sku": "STALE-1", "name": "Stale", "price": 1, "currency": "EUR"},
    )
    payload = created.data["createProduct"]

    read = await run(
        schema, app, PRODUCT, id=payload["product"]["id"], token=payload["consistencyToken"]
    )

    assert read.data["product"] is None
    report = read.extensions["consistency"]
    assert report["stale"] is True
    assert report["reads"][0]["token"] == payload["consistencyToken"]
    assert report["reads"][0]["behind"] >= 1


async def test_typed_errors_write_nothing(schema: strawberry.Schema, app: Bicameral) -> None:
    await run(
        schema, app, CREATE, input={"sku": "DUP-1", "name": "A", "price": 1, "currency": "EUR"}
    )
    head_before = (await app.lag())[0].head

    duplicate = await run(
        schema, app, CREATE, input={"sku": "dup-1", "name": "B", "price": 1, "currency": "EUR"}
    )
    negative = await run(
        schema, app, CREATE, input={"sku": "NEG-1", "name": "B", "price": -5, "currency": "EUR"}
    )

    assert duplicate.data["createProduct"]["__typename"] == "AlreadyExistsError"
    assert (duplicate.data["createProduct"]["code"], duplicate.data["createProduct"]["field"]) == (
        "SKU_TAKEN",
        "sku",
    )
    assert negative.data["createProduct"]["__typename"] == "InvalidInputError"
    assert negative.data["createProduct"]["field"] == "price"
    assert (await app.lag())[0].head == head_before


async def test_products_search_filters_and_pages_from_elasticsearch(
    schema: strawberry.Schema, app: Bicameral
) -> None:
    for i in range(7):
        await run(
            schema,
            app,
            CREATE,
            input={
                "sku": f"PG-{i}",
                "name": f"Camping lamp {i}",
                "price": 1000 + i * 100,
                "currency": "EUR",
                "category": "outdoor" if i % 2 else "home",
                "initialStock": i,
            },
        )
    await app.worker.run_until_caught_up()
    query = """
    query Page($after: String) {
      products(search: "lamp", filter: {categories: ["Outdoor"], inStock: true},
               sort: PRICE_ASC, first: 2, after: $after) {
        totalCount
        edges { cursor node { sku price { amount } } }
        pageInfo { hasNextPage endCursor }
      }
    }
    """
    seen: list[str] = []
    after = None
    while True:
        page = (await run(schema, app, query, after=after)).data["products"]
        assert page["totalCount"] == 3
        seen += [edge["node"]["sku"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["PG-1", "PG-3", "PG-5"]


async def test_a_malformed_cursor_is_a_clear_error_not_a_crash(
    schema: strawberry.Schema, app: Bicameral
) -> None:
    result = await schema.execute(
        '{ products(after: "not-a-cursor") { totalCount } }',
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": "after"}
    assert "cursor" in result.errors[0].message


async def test_read_model_reports_position_head_and_lag(
    schema: strawberry.Schema, app: Bicameral
) -> None:
    await run(
        schema, app, CREATE, input={"sku": "LAG-1", "name": "L", "price": 1, "currency": "EUR"}
    )
    query = "{ readModel { indexedUpTo projections { name position head lagEvents } } }"

    before = (await run(schema, app, query)).data["readModel"]
    await app.worker.run_until_caught_up()
    after = (await run(schema, app, query)).data["readModel"]

    assert {p["name"] for p in before["projections"]} == {"products", "orders", "customers"}
    assert all(p["lagEvents"] == p["head"] - p["position"] > 0 for p in before["projections"])
    assert all(p["lagEvents"] == 0 for p in after["projections"])
    assert after["indexedUpTo"] == after["projections"][0]["head"]
