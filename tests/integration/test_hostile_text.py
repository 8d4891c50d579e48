"""Hostile text and amounts over HTTP, on SQLite and PostgreSQL with a real
Elasticsearch: every text field of every mutation gets NUL, the characters
Elasticsearch reserves, a noncharacter, a lone surrogate, 100 KB and emoji.
Each answer is a typed error naming the field, or the value is stored and then
readable and searchable; the feed never stops. An order whose total an Int
cannot carry is refused and writes nothing."""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.bootstrap import Bicameral
from api.identity import Role
from domain.rules import MAX_PRICE
from writemodel import outbox

pytestmark = pytest.mark.elasticsearch

# What JSON carries to us as escapes: json.dumps writes "\u0000", "\ud800" and so on.
HOSTILE = {
    "nul": "nul\x00byte",
    "record-separator": "a\x1eb",
    "unit-separator": "a\x1fb",
    "noncharacter": "a\uffffb",
    "lone-surrogate": "a\ud800b",
}
HUNDRED_KB = "x" * 100_000


def nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


@dataclass
class Targets:
    """Objects a mutation can act on: a product with stock, a customer, a placed
    order and a paid one."""

    product_id: str
    sku: str
    customer_id: str
    order_id: str
    paid_order_id: str


Build = Callable[[Targets, int], dict[str, Any]]

# Each mutation: its payload's object, and an input that succeeds on fresh targets.
MUTATIONS: dict[str, tuple[str, Build]] = {
    "createProduct": (
        "product",
        lambda t, n: {
            "sku": f"HT-NEW-{n}",
            "name": "Mug",
            "price": 100,
            "currency": "EUR",
            "description": "A mug",
            "category": "kitchen",
            "tags": ["mug"],
        },
    ),
    "updateProduct": (
        "product",
        lambda t, n: {
            "productId": t.product_id,
            "name": "Mug",
            "description": "A mug",
            "category": "kitchen",
            "tags": ["mug"],
        },
    ),
    "changePrice": (
        "product",
        lambda t, n: {"productId": t.product_id, "price": 250, "currency": "EUR"},
    ),
    "discontinueProduct": ("product", lambda t, n: {"productId": t.product_id}),
    "receiveStock": ("product", lambda t, n: {"productId": t.product_id, "quantity": 1}),
    "adjustStock": (
        "product",
        lambda t, n: {"productId": t.product_id, "onHand": 90, "reason": "stocktake"},
    ),
    "registerCustomer": (
        "customer",
        lambda t, n: {"email": f"new-{n}@example.com", "name": "Ada"},
    ),
    "eraseCustomer": ("customer", lambda t, n: {"customerId": t.customer_id}),
    "placeOrder": (
        "order",
        lambda t, n: {"customerId": t.customer_id, "lines": [{"sku": t.sku, "quantity": 1}]},
    ),
    "payOrder": ("order", lambda t, n: {"orderId": t.order_id}),
    "shipOrder": ("order", lambda t, n: {"orderId": t.paid_order_id}),
    "cancelOrder": ("order", lambda t, n: {"orderId": t.order_id, "reason": "changed my mind"}),
}

# Every text input of every mutation, as the error's `field` names it.
TEXT_FIELDS: dict[str, list[str]] = {
    "createProduct": ["sku", "name", "description", "category", "tags.0", "currency"],
    "updateProduct": ["productId", "name", "description", "category", "tags.0"],
    "changePrice": ["productId", "currency"],
    "discontinueProduct": ["productId"],
    "receiveStock": ["productId"],
    "adjustStock": ["productId", "reason"],
    "registerCustomer": ["email", "name"],
    "eraseCustomer": ["customerId"],
    "placeOrder": ["customerId", "lines.0.sku"],
    "payOrder": ["orderId"],
    "shipOrder": ["orderId"],
    "cancelOrder": ["orderId", "reason"],
}
CASES = [
    (mutation, field)
    for mutation, fields in TEXT_FIELDS.items()
    for field in [*fields, "idempotencyKey"]
]

# Where emoji are ordinary text and must be stored; elsewhere (skus, ids,
# currencies) a typed error is the right answer.
FREE_TEXT = {
    ("createProduct", "name"),
    ("createProduct", "description"),
    ("createProduct", "category"),
    ("createProduct", "tags.0"),
    ("updateProduct", "name"),
    ("updateProduct", "description"),
    ("updateProduct", "category"),
    ("updateProduct", "tags.0"),
    ("adjustStock", "reason"),
    ("registerCustomer", "email"),
    ("registerCustomer", "name"),
    ("cancelOrder", "reason"),
    *((mutation, "idempotencyKey") for mutation in TEXT_FIELDS),
}


def _document(mutation: str, payload: str) -> str:
    typename = mutation[0].upper() + mutation[1:]
    return (
        f"mutation($input: {typename}Input!, $key: String) {{ "
        f"{mutation}(input: $input, idempotencyKey: $key) {{ __typename "
        f"... on Error {{ code field message }} "
        f"... on {typename}Success {{ consistencyToken replayed {payload} {{ id }} }} }} }}"
    )


def _set(input: dict[str, Any], path: str, value: str) -> None:
    *parents, last = path.split(".")
    here: Any = input
    for step in parents:
        here = here[int(step)] if step.isdigit() else here[step]
    if last.isdigit():
        here[int(last)] = value
    else:
        here[last] = value


class Client:
    """GraphQL over HTTP as a browser sends it: JSON with \\u escapes."""

    def __init__(self, http: httpx.AsyncClient, app: Bicameral) -> None:
        self.http = http
        self.app = app
        self.numbers = itertools.count(1)

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables})  # ensure_ascii: escapes
        response = await self.http.post(
            "/graphql", content=body.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text[:500]
        answer: dict[str, Any] = response.json()
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    async def mutate(
        self, mutation: str, input: dict[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        payload = MUTATIONS[mutation][0]
        data = await self.graphql(_document(mutation, payload), input=input, key=key)
        result: dict[str, Any] = data[mutation]
        return result

    async def ok(self, mutation: str, input: dict[str, Any]) -> str:
        answer = await self.mutate(mutation, input)
        assert answer["__typename"].endswith("Success"), answer
        return str(answer[MUTATIONS[mutation][0]]["id"])

    async def targets(self) -> Targets:
        n = next(self.numbers)
        sku = f"HT-{n}"
        product_id = await self.ok(
            "createProduct",
            {"sku": sku, "name": "Target", "price": 100, "currency": "EUR", "initialStock": 100},
        )
        customer_id = await self.ok(
            "registerCustomer", {"email": f"target-{n}@example.com", "name": "Target"}
        )
        lines = [{"sku": sku, "quantity": 1}]
        order_id = await self.ok("placeOrder", {"customerId": customer_id, "lines": lines})
        paid_order_id = await self.ok("placeOrder", {"customerId": customer_id, "lines": lines})
        await self.ok("payOrder", {"orderId": paid_order_id})
        return Targets(product_id, sku, customer_id, order_id, paid_order_id)

    async def send(
        self, targets: Targets, mutation: str, field: str, value: str
    ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        input = MUTATIONS[mutation][1](targets, next(self.numbers))
        key = None
        if field == "idempotencyKey":
            key = value
        else:
            _set(input, field, value)
        return await self.mutate(mutation, input, key), input, key


@pytest.fixture
async def client(app: Bicameral) -> AsyncIterator[Client]:
    """As an admin, whose token the app's local key (in its DATA_DIR) signs: every
    mutation here must reach its field checks, past the access rules."""
    settings = app.settings
    token = LocalSigningKey.load_or_create(settings.data_dir).token(
        role=Role.ADMIN,
        subject="tests",
        issuer=settings.auth_issuer or LOCAL_ISSUER,
        audience=settings.auth_audience or LOCAL_AUDIENCE,
        role_claim=settings.auth_role_claim,
        customer_claim=settings.auth_customer_claim,
    )
    transport = httpx.ASGITransport(app=create_app(bicameral=app))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        yield Client(http, app)


async def _feed_reaches_the_head(app: Bicameral) -> None:
    await app.worker.run_until_caught_up(timeout=60)
    lag = await app.lag()
    assert lag and all(p.position == p.head and p.lag_events == 0 for p in lag), lag


@pytest.mark.parametrize("value", [*HOSTILE.values(), HUNDRED_KB], ids=[*HOSTILE, "100kb"])
async def test_hostile_text_in_any_field_of_any_mutation_is_a_typed_error_naming_it(
    app: Bicameral, client: Client, value: str
) -> None:
    targets = await client.targets()
    await _feed_reaches_the_head(app)
    head = (await app.lag())[0].head

    for mutation, field in CASES:
        answer, _, _ = await client.send(targets, mutation, field, value)
        assert answer["__typename"] == "InvalidInputError", (mutation, field, answer)
        assert answer["field"] == field, (mutation, answer)
        if value is not HUNDRED_KB:
            assert answer["code"] == "TEXT_INVALID_CHARACTERS", (mutation, answer)

    async with app.engine.connect() as conn:
        assert await outbox.read_after(conn, head, 10) == []  # nothing was written
    await _feed_reaches_the_head(app)


PRODUCT = "query($id: ID!) { product(id: $id) { name description category tags } }"
SEARCH = """
query($search: String, $filter: ProductFilterInput) {
  products(search: $search, filter: $filter) { edges { node { id } } }
}
"""
CUSTOMER = "query($id: ID!) { customer(id: $id) { name email } }"
CUSTOMERS = "query($search: String) { customers(search: $search) { edges { node { id } } } }"
ALL_STATUSES = ["DRAFT", "ACTIVE", "DISCONTINUED"]


async def test_emoji_in_any_field_are_stored_readable_and_searchable_or_refused_by_name(
    app: Bicameral, client: Client
) -> None:
    stored: list[tuple[str, str, str, dict[str, Any], str | None, str]] = []
    for mutation, field in CASES:
        targets = await client.targets()
        token = f"zq{next(client.numbers)}x"
        # A decomposed e-acute too: what is stored is its NFC form.
        value = f"Cafe\u0301 \U0001f389 {token}"
        if field == "email":
            value = f"cafe\u0301-\U0001f389-{token}@example.com"
        answer, input, key = await client.send(targets, mutation, field, value)
        if answer["__typename"].endswith("Success"):
            object_id = answer[MUTATIONS[mutation][0]]["id"]
            stored.append((mutation, field, value, input, key, object_id))
        else:
            assert answer["__typename"] == "InvalidInputError", (mutation, field, answer)
            assert answer["field"] == field, (mutation, answer)
    assert {(m, f) for m, f, *_ in stored} == FREE_TEXT

    await _feed_reaches_the_head(app)
    for mutation, field, value, input, key, object_id in stored:
        token = value.rsplit(" ", 1)[-1]
        if field == "idempotencyKey":
            again = await client.mutate(mutation, input, key)
            assert again["replayed"] is True, (mutation, again)
        elif field in ("name", "description") and mutation.endswith("Product"):
            product = (await client.graphql(PRODUCT, id=object_id))["product"]
            assert product[field] == nfc(value)
            found = await client.graphql(SEARCH, search=token, filter={"statuses": ALL_STATUSES})
            assert [e["node"]["id"] for e in found["products"]["edges"]] == [object_id]
        elif field in ("category", "tags.0"):
            product = (await client.graphql(PRODUCT, id=object_id))["product"]
            folded = nfc(value.lower())
            kind = "categories" if field == "category" else "tags"
            assert (product["category"] if field == "category" else product["tags"]) == (
                folded if field == "category" else [folded]
            )
            found = await client.graphql(SEARCH, filter={kind: [folded], "statuses": ALL_STATUSES})
            assert [e["node"]["id"] for e in found["products"]["edges"]] == [object_id]
        elif mutation == "registerCustomer":
            customer = (await client.graphql(CUSTOMER, id=object_id))["customer"]
            assert customer[field] == nfc(value.lower() if field == "email" else value)
            if field == "name":
                found = await client.graphql(CUSTOMERS, search=token)
                assert [e["node"]["id"] for e in found["customers"]["edges"]] == [object_id]
        else:  # a reason: kept with its event in the write database, not in a read model
            async with app.engine.connect() as conn:
                events = await outbox.read_after(conn, 0, 100_000)
            reasons = [e.payload.get("reason") for e in events if e.aggregate_id == object_id]
            assert nfc(value) in reasons, (mutation, reasons)
    await _feed_reaches_the_head(app)


async def test_an_order_whose_total_an_int_cannot_carry_is_refused_and_writes_nothing(
    app: Bicameral, client: Client
) -> None:
    product_id = await client.ok(
        "createProduct",
        {"sku": "BB-MAX", "name": "Dear", "price": MAX_PRICE, "currency": "EUR", "initialStock": 2},
    )
    customer_id = await client.ok("registerCustomer", {"email": "big@example.com", "name": "Big"})
    head = (await app.lag())[0].head

    answer = await client.mutate(
        "placeOrder", {"customerId": customer_id, "lines": [{"sku": "BB-MAX", "quantity": 2}]}
    )

    assert (answer["__typename"], answer["code"], answer["field"]) == (
        "RuleBrokenError",
        "ORDER_TOTAL_TOO_LARGE",
        "lines",
    )
    async with app.engine.connect() as conn:
        assert await outbox.read_after(conn, head, 10) == []
    await _feed_reaches_the_head(app)
    stock = await client.graphql(
        "query($id: ID!) { product(id: $id) { stock { onHand reserved } } }", id=product_id
    )
    assert stock["product"]["stock"] == {"onHand": 2, "reserved": 0}
    orders = await client.graphql(
        "query($c: ID!) { orders(filter: {customerId: $c}) { totalCount } }", c=customer_id
    )
    assert orders["orders"]["totalCount"] == 0


async def test_a_customers_spending_past_what_an_int_carries_is_answered_as_a_long(
    app: Bicameral, client: Client
) -> None:
    await client.ok(
        "createProduct",
        {"sku": "BB-ONE", "name": "Dear", "price": MAX_PRICE, "currency": "EUR", "initialStock": 2},
    )
    customer_id = await client.ok("registerCustomer", {"email": "rich@example.com", "name": "R"})
    for _ in range(2):
        order_id = await client.ok(
            "placeOrder", {"customerId": customer_id, "lines": [{"sku": "BB-ONE", "quantity": 1}]}
        )
        await client.ok("payOrder", {"orderId": order_id})

    await _feed_reaches_the_head(app)
    customer = await client.graphql(
        "query($id: ID!) { customer(id: $id) { orderCount totalSpent } }", id=customer_id
    )

    assert customer["customer"] == {"orderCount": 2, "totalSpent": 2 * MAX_PRICE}
