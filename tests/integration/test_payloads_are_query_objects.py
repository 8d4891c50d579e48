"""One object, one truth per id: every mutation's payload object is, field by field
and nested, the object a query reads with the mutation's consistencyToken, on
SQLite and PostgreSQL. A client cache that keeps one record per id (Apollo's
`Order:<id>`) sees no field flip between the two."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from tests.identities import ADMIN

SCHEMA = build_schema()

# Every field of each type, nested objects to their leaves.
FIELDS = {
    "product": "id version sku name description category tags price { amount currency } "
    "status stock { version onHand reserved available inStock } unitsSold createdAt updatedAt",
    "order": "id version status total { amount currency } "
    "customer { id name email erased } "
    "lines { productId sku productName quantity unitPrice { amount currency } "
    "amount { amount currency } } placedAt paidAt shippedAt cancelledAt",
    "customer": "id version name email erased orderCount totalSpent lastOrderAt",
}


@pytest.fixture
async def running(app: Bicameral) -> AsyncIterator[Bicameral]:
    """The app with its feed worker running, as `bicameral serve` has it."""
    task = asyncio.create_task(app.worker.run())
    app._worker_task = task
    yield app
    app.worker.stop()
    await asyncio.wait_for(task, timeout=10)
    app._worker_task = None


async def _execute(app: Bicameral, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    result = await SCHEMA.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


class Compare:
    """Runs a mutation, then the query of its object with the returned token."""

    def __init__(self, app: Bicameral) -> None:
        self.app = app
        self.compared: list[str] = []

    async def mutate(
        self, field: str, kind: str, input: dict[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        name = field[0].upper() + field[1:]
        query = (
            f"mutation($input: {name}Input!, $key: String) {{ "
            f"{field}(input: $input, idempotencyKey: $key) {{ __typename "
            f"... on Error {{ code message }} "
            f"... on MutationSuccess {{ consistencyToken replayed }} "
            f"... on {name}Success {{ {kind} {{ {FIELDS[kind]} }} }} }} }}"
        )
        payload = (await _execute(self.app, query, {"input": input, "key": key}))[field]
        assert payload["__typename"] == f"{name}Success", payload
        read = await _execute(
            self.app,
            f"query($id: ID!, $token: String) {{ {kind}(id: $id, consistencyToken: $token) "
            f"{{ {FIELDS[kind]} }} }}",
            {"id": payload[kind]["id"], "token": payload["consistencyToken"]},
        )
        assert _differences(payload[kind], read[kind]) == [], field
        self.compared.append(field)
        return payload


def _differences(mutation: Any, query: Any, path: str = "") -> list[str]:
    """Every leaf where the two differ, by its path."""
    if isinstance(mutation, dict) and isinstance(query, dict):
        found = []
        for key in sorted(mutation.keys() | query.keys()):
            found += _differences(mutation.get(key), query.get(key), f"{path}.{key}")
        return found
    if isinstance(mutation, list) and isinstance(query, list) and len(mutation) == len(query):
        found = []
        for i, (left, right) in enumerate(zip(mutation, query, strict=True)):
            found += _differences(left, right, f"{path}[{i}]")
        return found
    return [] if mutation == query else [f"{path}: {mutation!r} != {query!r}"]


def test_the_comparison_finds_a_nested_difference() -> None:
    left = {"lines": [{"productName": None}], "customer": {"name": "Ada"}}
    right = {"lines": [{"productName": "Mug"}], "customer": {"name": "Ada"}}
    assert _differences(left, right) == [".lines[0].productName: None != 'Mug'"]


async def test_every_mutation_answers_with_the_object_a_query_reads_with_its_token(
    running: Bicameral,
) -> None:
    c = Compare(running)

    created = await c.mutate(
        "createProduct",
        "product",
        {"sku": "mug-1", "name": "Mug", "price": 1200, "currency": "EUR", "initialStock": 5},
    )
    product_id = created["product"]["id"]
    assert created["product"]["updatedAt"] is not None
    updated = await c.mutate(
        "updateProduct", "product", {"productId": product_id, "name": "Big mug", "tags": ["tea"]}
    )
    assert updated["product"]["name"] == "Big mug"
    priced = await c.mutate("changePrice", "product", {"productId": product_id, "price": 1500})
    assert priced["product"]["updatedAt"] is not None
    await c.mutate("receiveStock", "product", {"productId": product_id, "quantity": 5})
    await c.mutate(
        "adjustStock", "product", {"productId": product_id, "onHand": 9, "reason": "stocktake"}
    )

    registered = await c.mutate(
        "registerCustomer", "customer", {"email": "eve@example.com", "name": "Eve"}
    )
    customer_id = registered["customer"]["id"]
    assert registered["customer"]["orderCount"] == 0

    placed = await c.mutate(
        "placeOrder",
        "order",
        {"customerId": customer_id, "lines": [{"sku": "MUG-1", "quantity": 2}]},
        key="first-order",
    )
    order = placed["order"]
    assert order["customer"]["name"] == "Eve"
    assert order["customer"]["email"] == "eve@example.com"
    assert order["lines"][0]["productName"] == "Big mug"
    paid = await c.mutate("payOrder", "order", {"orderId": order["id"]})
    assert paid["order"]["customer"]["name"] == "Eve"
    await c.mutate("shipOrder", "order", {"orderId": order["id"]})

    second = await c.mutate(
        "placeOrder",
        "order",
        {"customerId": customer_id, "lines": [{"sku": "MUG-1", "quantity": 1}]},
    )
    await c.mutate("cancelOrder", "order", {"orderId": second["order"]["id"], "reason": "late"})
    await c.mutate("discontinueProduct", "product", {"productId": product_id})

    erased = await c.mutate("eraseCustomer", "customer", {"customerId": customer_id})
    assert (erased["customer"]["orderCount"], erased["customer"]["totalSpent"]) == (2, 3000)
    assert erased["customer"]["lastOrderAt"] is not None

    # A replay answers with the order as it is now (shipped, its customer erased),
    # which is what a query with the first token reads too.
    replayed = await c.mutate(
        "placeOrder",
        "order",
        {"customerId": customer_id, "lines": [{"sku": "MUG-1", "quantity": 2}]},
        key="first-order",
    )
    assert replayed["replayed"] is True
    assert replayed["consistencyToken"] == placed["consistencyToken"]
    assert (replayed["order"]["status"], replayed["order"]["customer"]["erased"]) == (
        "SHIPPED",
        True,
    )

    listed = await _execute(running, "{ __schema { mutationType { fields { name } } } }", {})
    every_mutation = {f["name"] for f in listed["__schema"]["mutationType"]["fields"]}
    assert len(every_mutation) == 12
    assert every_mutation == set(c.compared)
