"""The query API over real Elasticsearch: filters, sorts, facets and page walks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import strawberry

from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from domain import commands as c
from tests.identities import ADMIN
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()


async def gql(app: Bicameral, query: str, **variables: Any) -> Any:
    result = await SCHEMA.execute(
        query,
        variable_values=variables,
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert result.errors is None, result.errors
    return result.data


CATALOG = [
    # sku, name, category, tags, price, stock
    ("K-1", "Steel kettle", "kitchen", ("steel", "tea"), 3490, 5),
    ("K-2", "Enamel mug", "kitchen", ("enamel", "tea"), 900, 0),
    ("K-3", "Tea strainer", "kitchen", ("steel", "tea"), 450, 12),
    ("O-1", "Camping kettle", "outdoor", ("steel", "camping"), 2900, 3),
    ("O-2", "Tent", "outdoor", ("camping",), 18900, 1),
    ("S-1", "Notebook", "stationery", ("paper",), 890, 40),
]


@pytest.fixture
async def catalog(app: Bicameral) -> Bicameral:
    for sku, name, category, tags, price, stock in CATALOG:
        await app.commands.execute(
            c.CreateProduct(
                sku=sku,
                name=name,
                category=category,
                tags=tags,
                price=price,
                currency="EUR",
                initial_stock=stock,
            ),
            actor=SYSTEM,
        )
    await app.worker.run_until_caught_up()
    return app


PRODUCTS = """
query($search: String, $filter: ProductFilterInput, $sort: ProductSort, $first: Int,
      $after: String) {
  products(search: $search, filter: $filter, sort: $sort, first: $first, after: $after) {
    totalCount
    edges { node { sku } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def skus(app: Bicameral, **variables: Any) -> list[str]:
    data = await gql(app, PRODUCTS, **variables)
    return [e["node"]["sku"] for e in data["products"]["edges"]]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"categories": ["kitchen"]}, {"K-1", "K-2", "K-3"}),
        ({"tags": ["steel", "tea"]}, {"K-1", "K-3"}),
        ({"minPrice": 890, "maxPrice": 2900}, {"K-2", "O-1", "S-1"}),
        ({"inStock": False}, {"K-2"}),
        ({"categories": ["outdoor"], "inStock": True, "tags": ["camping"]}, {"O-1", "O-2"}),
    ],
)
async def test_each_filter_narrows_the_products(
    catalog: Bicameral, filter: dict[str, Any], expected: set[str]
) -> None:
    assert set(await skus(catalog, filter=filter)) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("PRICE_ASC", ["K-3", "S-1", "K-2", "O-1", "K-1", "O-2"]),
        ("PRICE_DESC", ["O-2", "K-1", "O-1", "K-2", "S-1", "K-3"]),
        ("NAME", ["O-1", "K-2", "S-1", "K-1", "K-3", "O-2"]),
        ("NEWEST", ["S-1", "O-2", "O-1", "K-3", "K-2", "K-1"]),
    ],
)
async def test_each_sort_orders_the_products(
    catalog: Bicameral, sort: str, expected: list[str]
) -> None:
    assert await skus(catalog, sort=sort) == expected


async def test_search_ranks_by_relevance(catalog: Bicameral) -> None:
    found = await skus(catalog, search="kettle")
    assert set(found) == {"K-1", "O-1"}
    # Every word must match: the tent is not "steel tea".
    assert set(await skus(catalog, search="steel tea")) == {"K-1", "K-3"}


async def test_facets_count_without_their_own_filter(catalog: Bicameral) -> None:
    data = await gql(
        catalog,
        """{ products(filter: {categories: ["kitchen"], inStock: true}) {
               totalCount
               facets { categories { value count } tags { value count }
                        priceRanges { min max count } inStock } } }""",
    )
    products = data["products"]
    assert products["totalCount"] == 2  # K-1 and K-3
    facets = products["facets"]
    # Categories ignore the category filter but keep inStock: kitchen 2, outdoor 2, stationery 1.
    assert {f["value"]: f["count"] for f in facets["categories"]} == {
        "kitchen": 2,
        "outdoor": 2,
        "stationery": 1,
    }
    assert {f["value"]: f["count"] for f in facets["tags"]} == {"steel": 2, "tea": 2}
    # In stock ignores its own filter: all three kitchen products, two with stock.
    assert facets["inStock"] == 2
    ranges = {(r["min"], r["max"]): r["count"] for r in facets["priceRanges"]}
    assert ranges == {
        (0, 1000): 1,
        (1000, 2500): 0,
        (2500, 5000): 1,
        (5000, 10000): 0,
        (10000, None): 0,
    }


async def test_facets_asked_through_fragments_or_a_second_selection_are_counted(
    catalog: Bicameral,
) -> None:
    """The resolver asks the search for facets only when the selection names them:
    through a named fragment, an inline fragment, or the second of two selections
    of the same field merged into one, as much as directly; not when nothing does."""
    ways = [
        """{ products(search: "kettle") { ...Counts } }
           fragment Counts on ProductConnection { facets { inStock } }""",
        """{ products(search: "kettle") { ... on ProductConnection { facets { inStock } } } }""",
        """{ products(search: "kettle") { totalCount }
             products(search: "kettle") { facets { inStock } } }""",
    ]
    for query in ways:
        data = await gql(catalog, query)
        assert data["products"]["facets"] == {"inStock": 2}, query
    data = await gql(catalog, '{ products(search: "kettle") { totalCount } }')
    assert data["products"] == {"totalCount": 2}
    without = await gql(
        catalog,
        """{ products(search: "kettle") { ... on ProductConnection { totalCount } }
             p: products(search: "kettle") { facets { inStock } } }""",
    )
    assert without["p"]["facets"] == {"inStock": 2}


async def test_walking_every_page_returns_each_product_exactly_once_while_more_arrive(
    catalog: Bicameral,
) -> None:
    app = catalog
    seen: list[str] = []
    after = None
    added = 0
    while True:
        data = await gql(app, PRODUCTS, sort="PRICE_ASC", first=2, after=after)
        page = data["products"]
        seen += [e["node"]["sku"] for e in page["edges"]]
        if added < 3:
            # New products land while we walk; they may or may not be seen, never twice.
            await app.commands.execute(
                c.CreateProduct(sku=f"NEW-{added}", name="New", price=100 + added, currency="EUR"),
                actor=SYSTEM,
            )
            await app.worker.run_until_caught_up()
            added += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen))
    assert {sku for sku, *_ in CATALOG} <= set(seen)


async def test_suggestions_complete_a_name_prefix(catalog: Bicameral) -> None:
    data = await gql(catalog, '{ productSuggestions(prefix: "ke") { sku name } }')
    assert {s["sku"] for s in data["productSuggestions"]} == {"K-1", "O-1"}


SUGGEST = "query($prefix: String!) { productSuggestions(prefix: $prefix) { sku } }"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # The start of the name and the start of any later word, in name order.
        ("ke", ["O-1", "K-1"]),
        ("KET", ["O-1", "K-1"]),
        # Whole words before the last, in any order; the last only begun.
        ("steel ke", ["K-1"]),
        ("kettle st", ["K-1"]),
        ("camping kettle", ["O-1"]),
        # Never the middle of a word; every word must be found.
        ("ettle", []),
        ("steel te", []),
    ],
)
async def test_suggestions_match_the_start_of_any_word_of_the_name_as_the_schema_says(
    catalog: Bicameral, prefix: str, expected: list[str]
) -> None:
    data = await gql(catalog, SUGGEST, prefix=prefix)
    assert [s["sku"] for s in data["productSuggestions"]] == expected


async def test_suggestions_show_only_what_products_shows_by_default_even_to_staff(
    catalog: Bicameral,
) -> None:
    app = catalog
    await app.commands.execute(
        c.CreateProduct(sku="D-1", name="Kettle draft", price=100, currency="EUR", status="draft"),
        actor=SYSTEM,
    )
    gone = await app.commands.execute(
        c.CreateProduct(sku="X-1", name="Kettle gone", price=100, currency="EUR"), actor=SYSTEM
    )
    await app.commands.execute(c.DiscontinueProduct(product_id=gone.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()

    suggested = await gql(app, SUGGEST, prefix="ke")
    listed = await skus(app, search="kettle")

    # ADMIN sees every status when asking for it, and yet: a suggestion is active only.
    assert [s["sku"] for s in suggested["productSuggestions"]] == ["O-1", "K-1"]
    assert sorted(listed) == ["K-1", "O-1"]


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ("first: 101", "first"),
        ("first: 0", "first"),
        ("filter: {minPrice: -1}", "filter.minPrice"),
        ("filter: {minPrice: 10, maxPrice: 5}", "filter.minPrice"),
        ('after: "%%%"', "after"),
    ],
)
async def test_invalid_arguments_get_a_clear_error(
    catalog: Bicameral, arguments: str, argument: str
) -> None:
    result = await SCHEMA.execute(
        f"{{ products({arguments}) {{ totalCount }} }}",
        context_value=Context(app=catalog, request=None, identity=ADMIN),
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": argument}


async def test_orders_filter_by_customer_status_and_total(app: Bicameral) -> None:
    await app.commands.execute(
        c.CreateProduct(sku="P-1", name="P", price=1000, currency="EUR", initial_stock=100),
        actor=SYSTEM,
    )
    ann = (
        await app.commands.execute(c.RegisterCustomer("ann@example.com", "Ann"), actor=SYSTEM)
    ).snapshot
    bob = (
        await app.commands.execute(c.RegisterCustomer("bob@example.com", "Bob"), actor=SYSTEM)
    ).snapshot
    orders = {}
    for who, qty in (("ann", 1), ("ann", 3), ("bob", 2)):
        customer = ann if who == "ann" else bob
        placed = await app.commands.execute(
            c.PlaceOrder(customer["id"], (c.OrderLineRequest("P-1", qty),)), actor=SYSTEM
        )
        orders[(who, qty)] = placed.snapshot["id"]
        await asyncio.sleep(0.01)  # distinct placed times
    await app.commands.execute(c.PayOrder(orders[("ann", 3)]), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    query = """query($filter: OrderFilterInput, $sort: OrderSort) {
      orders(filter: $filter, sort: $sort) {
        totalCount edges { node { id total { amount } status customer { name } } } } }"""

    by_ann = await gql(app, query, filter={"customerId": ann["id"]}, sort="OLDEST")
    paid = await gql(app, query, filter={"statuses": ["PAID"]})
    big = await gql(app, query, filter={"minTotal": 2000}, sort="TOTAL_DESC")

    assert [e["node"]["id"] for e in by_ann["orders"]["edges"]] == [
        orders[("ann", 1)],
        orders[("ann", 3)],
    ]
    assert by_ann["orders"]["edges"][0]["node"]["customer"]["name"] == "Ann"
    assert [e["node"]["id"] for e in paid["orders"]["edges"]] == [orders[("ann", 3)]]
    assert [e["node"]["total"]["amount"] for e in big["orders"]["edges"]] == [3000, 2000]


async def test_customers_search_and_lifetime_figures(app: Bicameral) -> None:
    await app.commands.execute(
        c.CreateProduct(sku="P-2", name="P", price=500, currency="EUR", initial_stock=10),
        actor=SYSTEM,
    )
    ann = (
        await app.commands.execute(c.RegisterCustomer("ann@example.com", "Ann Lee"), actor=SYSTEM)
    ).snapshot
    await app.commands.execute(c.RegisterCustomer("bob@example.com", "Bob Stone"), actor=SYSTEM)
    placed = await app.commands.execute(
        c.PlaceOrder(ann["id"], (c.OrderLineRequest("P-2", 2),)), actor=SYSTEM
    )
    await app.commands.execute(c.PayOrder(placed.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()

    found = await gql(app, '{ customers(search: "ann") { totalCount edges { node { id } } } }')
    listed = await gql(app, "{ customers { edges { node { name } } } }")
    one = await gql(
        app,
        "query($id: ID!) { customer(id: $id) { name orderCount totalSpent lastOrderAt } }",
        id=ann["id"],
    )

    assert [e["node"]["id"] for e in found["customers"]["edges"]] == [ann["id"]]
    assert [e["node"]["name"] for e in listed["customers"]["edges"]] == ["Ann Lee", "Bob Stone"]
    assert one["customer"]["orderCount"] == 1
    assert one["customer"]["totalSpent"] == 1000
    assert one["customer"]["lastOrderAt"] is not None


def test_schema_builds() -> None:
    assert isinstance(SCHEMA, strawberry.Schema)


async def test_a_search_for_a_whole_sku_finds_that_product(catalog: Bicameral) -> None:
    assert await skus(catalog, search="o-2") == ["O-2"]


async def test_units_sold_sort_puts_the_best_sellers_first(app: Bicameral) -> None:
    customer = (
        await app.commands.execute(c.RegisterCustomer("s@example.com", "S"), actor=SYSTEM)
    ).snapshot
    for sku, sold in (("U-1", 1), ("U-2", 3), ("U-3", 2)):
        await app.commands.execute(
            c.CreateProduct(sku=sku, name=sku, price=100, currency="EUR", initial_stock=5),
            actor=SYSTEM,
        )
        order = await app.commands.execute(
            c.PlaceOrder(customer["id"], (c.OrderLineRequest(sku, sold),)), actor=SYSTEM
        )
        await app.commands.execute(c.PayOrder(order.snapshot["id"]), actor=SYSTEM)
        await app.commands.execute(c.ShipOrder(order.snapshot["id"]), actor=SYSTEM)
    await app.worker.run_until_caught_up()

    assert await skus(app, sort="UNITS_SOLD") == ["U-2", "U-3", "U-1"]


async def test_relevance_without_a_search_falls_back_to_newest(catalog: Bicameral) -> None:
    assert await skus(catalog, sort="RELEVANCE") == await skus(catalog, sort="NEWEST")
    # With a search, the name match outranks the description-only match.
    await catalog.commands.execute(
        c.CreateProduct(
            sku="D-1",
            name="Cup",
            description="goes well with a kettle",
            price=5,
            currency="EUR",
        ),
        actor=SYSTEM,
    )
    await catalog.worker.run_until_caught_up()
    ranked = await skus(catalog, search="kettle", sort="RELEVANCE")
    assert set(ranked[:2]) == {"K-1", "O-1"} and ranked[2] == "D-1"
