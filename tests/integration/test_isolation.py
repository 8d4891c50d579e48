"""Isolation over real services: customer A tries every path to customer B's data,
and nothing of B's comes back; anonymous callers and customers see active
products only, wherever products are shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from strawberry.types import ExecutionResult

from api.bootstrap import Bicameral
from api.context import Context
from api.identity import ANONYMOUS, Identity
from api.schema import build_schema
from domain import commands as c
from tests.identities import STAFF, customer
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()


@dataclass(frozen=True)
class Shop:
    ann: str  # customer A
    bob: str  # customer B
    ann_orders: list[str]
    bob_orders: list[str]
    draft: str  # a draft product's id


@pytest.fixture
async def shop(app: Bicameral) -> Shop:
    await app.commands.execute(
        c.CreateProduct(
            sku="I-1", name="Iron kettle", price=1000, currency="EUR", initial_stock=50
        ),
        actor=SYSTEM,
    )
    draft = await app.commands.execute(
        c.CreateProduct(sku="I-2", name="Iron kestrel", price=5000, currency="EUR", status="draft"),
        actor=SYSTEM,
    )
    ann = (
        await app.commands.execute(c.RegisterCustomer("ann@example.com", "Ann"), actor=SYSTEM)
    ).snapshot
    bob = (
        await app.commands.execute(c.RegisterCustomer("bob@example.com", "Bob"), actor=SYSTEM)
    ).snapshot
    placed: dict[str, list[str]] = {ann["id"]: [], bob["id"]: []}
    for who, quantity in ((ann, 1), (bob, 2), (bob, 3), (ann, 4), (bob, 5)):
        order = await app.commands.execute(
            c.PlaceOrder(who["id"], (c.OrderLineRequest("I-1", quantity),)), actor=SYSTEM
        )
        placed[who["id"]].append(order.snapshot["id"])
    await app.commands.execute(c.PayOrder(placed[bob["id"]][0]), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    await app.hub.pump()
    return Shop(ann["id"], bob["id"], placed[ann["id"]], placed[bob["id"]], draft.snapshot["id"])


async def ask(app: Bicameral, identity: Identity, query: str, **variables: Any) -> Any:
    result = await SCHEMA.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=identity),
    )
    assert result.errors is None, result.errors
    return result.data


def codes(result: ExecutionResult) -> list[str]:
    return [(e.extensions or {}).get("code", "") for e in result.errors or ()]


ORDERS = """query($filter: OrderFilterInput, $first: Int, $after: String) {
  orders(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { id customer { id email } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_a_customer_lists_only_their_own_orders_and_counts_only_those(
    app: Bicameral, shop: Shop
) -> None:
    data = await ask(app, customer(shop.ann), ORDERS)

    ids = {e["node"]["id"] for e in data["orders"]["edges"]}
    assert ids == set(shop.ann_orders)
    assert data["orders"]["totalCount"] == len(shop.ann_orders)
    assert {e["node"]["customer"]["email"] for e in data["orders"]["edges"]} == {"ann@example.com"}


async def test_filtering_by_another_customers_id_finds_nothing(app: Bicameral, shop: Shop) -> None:
    data = await ask(app, customer(shop.ann), ORDERS, filter={"customerId": shop.bob})

    assert data["orders"] == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }


async def test_a_cursor_from_another_customers_page_reveals_none_of_their_orders(
    app: Bicameral, shop: Shop
) -> None:
    bobs_page = await ask(app, customer(shop.bob), ORDERS, first=1)
    bobs_cursors = [e["cursor"] for e in bobs_page["orders"]["edges"]]
    bobs_cursors.append(bobs_page["orders"]["pageInfo"]["endCursor"])

    for cursor in bobs_cursors:
        data = await ask(app, customer(shop.ann), ORDERS, first=100, after=cursor)
        ids = {e["node"]["id"] for e in data["orders"]["edges"]}
        assert ids <= set(shop.ann_orders)
        assert data["orders"]["totalCount"] == len(shop.ann_orders)


async def test_another_customers_order_by_id_answers_null_as_a_missing_one_does(
    app: Bicameral, shop: Shop
) -> None:
    query = "query($id: ID!) { order(id: $id) { id customer { email } } }"
    for order in shop.bob_orders:
        assert await ask(app, customer(shop.ann), query, id=order) == {"order": None}
    assert await ask(app, customer(shop.ann), query, id="no-such-order") == {"order": None}
    # Staff see it: the order is there.
    staff = await ask(app, STAFF, query, id=shop.bob_orders[0])
    assert staff["order"]["customer"]["email"] == "bob@example.com"


async def test_a_customer_finds_only_themselves_among_customers(app: Bicameral, shop: Shop) -> None:
    one = "query($id: ID!) { customer(id: $id) { id email } }"
    every = """query($search: String) {
      customers(search: $search) { totalCount edges { node { id email } } } }"""

    assert await ask(app, customer(shop.ann), one, id=shop.bob) == {"customer": None}
    assert await ask(app, customer(shop.ann), one, id=shop.ann) == {
        "customer": {"id": shop.ann, "email": "ann@example.com"}
    }
    listed = await ask(app, customer(shop.ann), every)
    assert listed["customers"]["totalCount"] == 1
    assert [e["node"]["id"] for e in listed["customers"]["edges"]] == [shop.ann]
    searched = await ask(app, customer(shop.ann), every, search="bob")
    assert searched["customers"] == {"totalCount": 0, "edges": []}


async def test_a_customer_may_not_follow_another_customers_orders_nor_the_whole_feed(
    app: Bicameral, shop: Shop
) -> None:
    for query in (
        f'subscription {{ ordersOfCustomer(customerId: "{shop.bob}") {{ id }} }}',
        'subscription { changes(after: "0") { id } }',
        'subscription { changes(types: [ORDER], after: "0") { id } }',
    ):
        result = await first(app, customer(shop.ann), query)
        assert codes(result) == ["FORBIDDEN"], query
        assert result.data is None


async def test_following_another_customers_order_delivers_nothing_of_it(
    app: Bicameral, shop: Shop
) -> None:
    query = 'subscription($id: ID!) { orderChanged(id: $id, after: "0") { id order { id } } }'
    # Staff hear the order's replayed changes at once...
    heard = await first(app, STAFF, query, id=shop.bob_orders[0])
    assert heard.errors is None and heard.data is not None
    assert heard.data["orderChanged"]["id"] == shop.bob_orders[0]
    # ...Ann hears nothing of them (a generous wait: the replay is immediate).
    with pytest.raises(TimeoutError):
        await first(app, customer(shop.ann), query, deadline=2.0, id=shop.bob_orders[0])


async def test_a_customers_order_notifications_are_theirs_with_their_order_nested(
    app: Bicameral, shop: Shop
) -> None:
    query = """subscription($id: ID!) {
      ordersOfCustomer(customerId: $id, after: "0") { id order { id customer { email } } } }"""
    heard = await first(app, customer(shop.ann), query, id=shop.ann)

    assert heard.errors is None and heard.data is not None
    note = heard.data["ordersOfCustomer"]
    assert note["id"] in shop.ann_orders
    assert note["order"] == {"id": note["id"], "customer": {"email": "ann@example.com"}}


PRODUCTS = """query($filter: ProductFilterInput) {
  products(filter: $filter) {
    totalCount edges { node { sku status } } facets { categories { value count } }
  }
}"""


@pytest.mark.parametrize("who", ["anonymous", "customer"])
async def test_only_active_products_are_shown_to_anonymous_callers_and_customers(
    app: Bicameral, shop: Shop, who: str
) -> None:
    identity = ANONYMOUS if who == "anonymous" else customer(shop.ann)
    drafts = await ask(app, identity, PRODUCTS, filter={"statuses": ["DRAFT", "ACTIVE"]})
    by_id = await ask(app, identity, "query($id: ID!) { product(id: $id) { id } }", id=shop.draft)
    by_sku = await ask(app, identity, '{ product(sku: "I-2") { id } }')
    suggested = await ask(app, identity, '{ productSuggestions(prefix: "iron ke") { sku } }')

    assert drafts["products"]["totalCount"] == 1
    assert [e["node"]["sku"] for e in drafts["products"]["edges"]] == ["I-1"]
    assert sum(f["count"] for f in drafts["products"]["facets"]["categories"]) == 1
    assert by_id == {"product": None}
    assert by_sku == {"product": None}
    assert suggested == {"productSuggestions": [{"sku": "I-1"}]}


async def test_staff_see_every_status_they_ask_for(app: Bicameral, shop: Shop) -> None:
    drafts = await ask(app, STAFF, PRODUCTS, filter={"statuses": ["DRAFT"]})
    suggested = await ask(app, STAFF, '{ productSuggestions(prefix: "iron ke") { sku } }')

    assert [e["node"]["sku"] for e in drafts["products"]["edges"]] == ["I-2"]
    # A suggestion shows what `products` shows by default, to staff as well.
    assert suggested == {"productSuggestions": [{"sku": "I-1"}]}


async def test_a_drafts_changes_reach_staff_but_not_anonymous_subscribers(
    app: Bicameral, shop: Shop
) -> None:
    query = 'subscription($id: ID!) { productChanged(id: $id, after: "0") { id product { id } } }'
    heard = await first(app, STAFF, query, id=shop.draft)
    assert heard.data is not None
    assert heard.data["productChanged"] == {"id": shop.draft, "product": {"id": shop.draft}}
    with pytest.raises(TimeoutError):
        await first(app, ANONYMOUS, query, deadline=2.0, id=shop.draft)


async def first(
    app: Bicameral, identity: Identity, query: str, deadline: float = 30.0, **variables: Any
) -> ExecutionResult:
    """A subscription's first result, or TimeoutError when none comes in time."""
    stream = await SCHEMA.subscribe(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=identity),
    )
    if isinstance(stream, ExecutionResult):
        return stream
    assert isinstance(stream, AsyncIterator)
    try:
        async with asyncio.timeout(deadline):
            return await anext(stream)
    finally:
        await stream.aclose()
