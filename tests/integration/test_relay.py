"""Relay's server specification over real Elasticsearch: backward paging on
every connection, and `node`/`nodes` answering as each type's own field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.bootstrap import Bicameral
from api.context import Context
from api.identity import ANONYMOUS, Identity
from api.node import MAX_NODE_IDS
from api.schema import build_schema
from domain import commands as c
from tests.identities import ADMIN, STAFF, customer
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()


async def run(app: Bicameral, query: str, identity: Identity = ADMIN, **variables: Any) -> Any:
    return await SCHEMA.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=identity),
    )


async def gql(app: Bicameral, query: str, identity: Identity = ADMIN, **variables: Any) -> Any:
    result = await run(app, query, identity, **variables)
    assert result.errors is None, result.errors
    return result.data


CATALOG = [
    # sku, name, price, status
    ("A-1", "Steel kettle", 3490, "active"),
    ("A-2", "Enamel mug", 900, "active"),
    ("A-3", "Tea strainer", 450, "active"),
    ("A-4", "Camping kettle", 2900, "active"),
    ("A-5", "Tent", 18900, "active"),
    ("D-1", "Draft kettle", 1500, "draft"),
    ("A-6", "Notebook", 890, "active"),
]


@pytest.fixture
async def shop(app: Bicameral) -> dict[str, Any]:
    """A catalog with one draft, two customers, and three orders (two Ann's)."""
    ids: dict[str, Any] = {}
    for sku, name, price, status in CATALOG:
        created = await app.commands.execute(
            c.CreateProduct(
                sku=sku,
                name=name,
                price=price,
                currency="EUR",
                status=status,
                tags=("kettle",) if "kettle" in name.lower() else (),
                initial_stock=50,
            ),
            actor=SYSTEM,
        )
        ids[sku] = created.snapshot["id"]
    for email, name in (("ann@example.com", "Ann"), ("bob@example.com", "Bob")):
        registered = await app.commands.execute(
            c.RegisterCustomer(email, f"{name} Lee"), actor=SYSTEM
        )
        ids[name] = registered.snapshot["id"]
    for who, qty in (("Ann", 1), ("Bob", 2), ("Ann", 3)):
        placed = await app.commands.execute(
            c.PlaceOrder(ids[who], (c.OrderLineRequest("A-1", qty),)), actor=SYSTEM
        )
        ids[f"{who}-{qty}"] = placed.snapshot["id"]
        await asyncio.sleep(0.01)  # distinct placed times
    await app.worker.run_until_caught_up()
    ids["app"] = app
    return ids


PRODUCTS = """
query($search: String, $sort: ProductSort, $first: Int, $after: String, $last: Int,
      $before: String) {
  products(search: $search, sort: $sort, first: $first, after: $after, last: $last,
           before: $before, filter: {statuses: [ACTIVE, DRAFT]}) {
    edges { cursor node { sku } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def walk_forward(app: Bicameral, query: str, field: str, key: str, **args: Any) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = (await gql(app, query, first=2, after=after, **args))[field]
        seen += [e["node"][key] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is False  # Relay: forward pages say false
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]


async def walk_backward(app: Bicameral, query: str, field: str, key: str, **args: Any) -> list[str]:
    seen: list[str] = []
    before = None
    while True:
        page = (await gql(app, query, last=2, before=before, **args))[field]
        edges = page["edges"]
        seen = [e["node"][key] for e in edges] + seen
        info = page["pageInfo"]
        assert info["hasNextPage"] is False  # Relay: backward pages say false
        if edges:
            assert info["startCursor"] == edges[0]["cursor"]
            assert info["endCursor"] == edges[-1]["cursor"]
        if not info["hasPreviousPage"]:
            return seen
        before = info["startCursor"]


@pytest.mark.parametrize(
    "args",
    [
        {"sort": "PRICE_ASC"},
        {"sort": "PRICE_DESC"},
        {"sort": "NAME"},
        {"sort": "NEWEST"},
        {"sort": "UNITS_SOLD"},
        {"search": "kettle"},
    ],
    ids=["price-asc", "price-desc", "name", "newest", "units-sold", "relevance"],
)
async def test_walking_products_backward_finds_the_forward_order_read_from_the_end(
    shop: dict[str, Any], args: dict[str, Any]
) -> None:
    app = shop["app"]
    forward = await walk_forward(app, PRODUCTS, "products", "sku", **args)
    backward = await walk_backward(app, PRODUCTS, "products", "sku", **args)

    assert backward == forward
    assert len(forward) == len(set(forward)) >= 3


async def test_a_forward_cursor_pages_backward_to_the_items_before_it(
    shop: dict[str, Any],
) -> None:
    app = shop["app"]
    first = (await gql(app, PRODUCTS, sort="PRICE_ASC", first=3))["products"]
    second = (
        await gql(app, PRODUCTS, sort="PRICE_ASC", first=2, after=first["pageInfo"]["endCursor"])
    )["products"]
    back = (
        await gql(app, PRODUCTS, sort="PRICE_ASC", last=3, before=second["pageInfo"]["startCursor"])
    )["products"]

    assert back["edges"] == first["edges"]  # same items, same order, same cursors
    assert back["pageInfo"]["hasPreviousPage"] is False
    last_two = (await gql(app, PRODUCTS, sort="PRICE_ASC", last=2))["products"]
    assert [e["node"]["sku"] for e in last_two["edges"]] == ["A-1", "A-5"]
    assert last_two["pageInfo"]["hasPreviousPage"] is True


ORDERS = """
query($sort: OrderSort, $first: Int, $after: String, $last: Int, $before: String) {
  orders(sort: $sort, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

CUSTOMERS = """
query($search: String, $first: Int, $after: String, $last: Int, $before: String) {
  customers(search: $search, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


@pytest.mark.parametrize("sort", ["NEWEST", "OLDEST", "TOTAL_DESC", "TOTAL_ASC"])
async def test_walking_orders_backward_finds_the_forward_order(
    shop: dict[str, Any], sort: str
) -> None:
    app = shop["app"]
    forward = await walk_forward(app, ORDERS, "orders", "id", sort=sort)
    backward = await walk_backward(app, ORDERS, "orders", "id", sort=sort)

    assert backward == forward
    assert len(forward) == 3


@pytest.mark.parametrize("search", [None, "lee"])
async def test_walking_customers_backward_finds_the_forward_order(
    shop: dict[str, Any], search: str | None
) -> None:
    app = shop["app"]
    forward = await walk_forward(app, CUSTOMERS, "customers", "id", search=search)
    backward = await walk_backward(app, CUSTOMERS, "customers", "id", search=search)

    assert backward == forward
    assert set(forward) == {shop["Ann"], shop["Bob"]}


async def test_a_customer_pages_backward_through_their_own_orders_only(
    shop: dict[str, Any],
) -> None:
    app = shop["app"]
    ann = customer(shop["Ann"])
    data = await gql(app, ORDERS, ann, last=5)

    assert [e["node"]["id"] for e in data["orders"]["edges"]] == [shop["Ann-3"], shop["Ann-1"]]
    assert data["orders"]["pageInfo"]["hasPreviousPage"] is False


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ("first: 2, last: 2", "last"),
        ("last: 0", "last"),
        ("last: -1", "last"),
        ("last: 101", "last"),
        ("first: -1", "first"),
        ('after: "x", before: "y"', "before"),
        ('first: 2, before: "y"', "before"),
        ('last: 2, after: "y"', "after"),
        ('last: 2, before: "%%%"', "before"),
        ('before: "W10"', "before"),  # [] : a cursor of no sort order
    ],
)
@pytest.mark.parametrize("field", ["products", "orders", "customers"])
async def test_bad_paging_arguments_get_a_clear_error_naming_the_argument(
    app: Bicameral, field: str, arguments: str, argument: str
) -> None:
    result = await run(app, f"{{ {field}({arguments}) {{ totalCount }} }}")

    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": argument}


NODE = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Product { sku }
    ... on Order { total { amount } }
    ... on Customer { name }
  }
}
"""

OWN_FIELD = {
    "Product": "query($id: ID!) { product(id: $id) { id sku } }",
    "Order": "query($id: ID!) { order(id: $id) { id total { amount } } }",
    "Customer": "query($id: ID!) { customer(id: $id) { id name } }",
}


async def test_node_finds_each_type_by_its_plain_id(shop: dict[str, Any]) -> None:
    app = shop["app"]
    product = (await gql(app, NODE, id=shop["A-1"]))["node"]
    order = (await gql(app, NODE, id=shop["Bob-2"]))["node"]
    person = (await gql(app, NODE, id=shop["Ann"]))["node"]

    assert product == {"__typename": "Product", "id": shop["A-1"], "sku": "A-1"}
    assert order == {"__typename": "Order", "id": shop["Bob-2"], "total": {"amount": 6980}}
    assert person == {"__typename": "Customer", "id": shop["Ann"], "name": "Ann Lee"}


def _identities(shop: dict[str, Any]) -> dict[str, Identity]:
    return {
        "anonymous": ANONYMOUS,
        "ann": customer(shop["Ann"]),
        "bob": customer(shop["Bob"]),
        "customer without id": customer(""),
        "staff": STAFF,
        "admin": ADMIN,
    }


_OBJECTS = [
    ("A-1", "Product"),
    ("D-1", "Product"),
    ("Ann", "Customer"),
    ("Bob", "Customer"),
    ("Ann-1", "Order"),
    ("Bob-2", "Order"),
]


@pytest.mark.parametrize(
    "who", ["anonymous", "ann", "bob", "customer without id", "staff", "admin"]
)
async def test_node_shows_exactly_what_the_types_own_field_shows_to_every_role(
    shop: dict[str, Any], who: str
) -> None:
    app = shop["app"]
    identity = _identities(shop)[who]
    ids = [shop[name] for name, _ in _OBJECTS]
    many = await run(app, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", identity, ids=ids)
    assert many.errors is None, many.errors

    for (name, typename), listed in zip(_OBJECTS, many.data["nodes"], strict=True):
        own = await run(app, OWN_FIELD[typename], identity, id=shop[name])
        node = await run(app, NODE, identity, id=shop[name])
        assert node.errors is None, node.errors  # never an error that tells it exists
        field = typename.lower()
        shown = None if own.errors else own.data[field]
        found = node.data["node"]
        assert (found is None) == (shown is None), (who, name)
        assert (listed is None) == (shown is None), (who, name)
        if shown is not None:
            assert found["id"] == shown["id"] == listed["id"]


async def test_nodes_answer_in_the_order_asked_with_null_for_what_is_not_there(
    shop: dict[str, Any],
) -> None:
    app = shop["app"]
    ids = [shop["Ann-3"], "no-such-id", "", "x" * 10_000, shop["A-2"], shop["Ann-3"], "\u0000"]
    data = await gql(app, "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }", ids=ids)

    assert data["nodes"] == [
        {"__typename": "Order", "id": shop["Ann-3"]},
        None,
        None,
        None,
        {"__typename": "Product", "id": shop["A-2"]},
        {"__typename": "Order", "id": shop["Ann-3"]},
        None,
    ]
    assert (await gql(app, "{ nodes(ids: []) { id } }"))["nodes"] == []


async def test_too_many_ids_get_a_clear_error(shop: dict[str, Any]) -> None:
    ids = [shop["A-1"]] * (MAX_NODE_IDS + 1)
    result = await run(shop["app"], "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=ids)

    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": "ids"}
    assert str(MAX_NODE_IDS) in result.errors[0].message
