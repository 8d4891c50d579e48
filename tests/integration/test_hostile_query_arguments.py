"""Every argument of every query field and subscription, sent hostile values as a
client can (JSON variables, so a lone surrogate too), on both databases against
real Elasticsearch: never an internal error, and always the documented answer
(docs/graphql.md, "What query arguments accept"):

- a lookup by an id or sku no object could have answers null, as a missing one
  (`node` too);
- a filter value no object could have (category, tag, customerId) matches nothing;
- free text (search, prefix), cursors, consistency tokens, subscription ids and
  positions, `first`, `last` and times that cannot be used are BAD_USER_INPUT
  naming the argument.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from strawberry.types import ExecutionResult

from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from domain import commands as c
from readmodel.queries import encode_cursor
from tests.identities import ADMIN
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()

HOSTILE = {
    "empty": "",
    "nul": "a\x00b",
    "record-separator": "a\x1eb",
    "unit-separator": "a\x1fb",
    "noncharacter": "a\uffffb",
    "lone-surrogate": "a\ud800b",
    "10k": "x" * 10_000,
    "100k": "y" * 100_000,
    "emoji": "\U0001f375\U0001f9d1\u200d\U0001f373",
}
# Hostile values that are still ordinary text: a search for them finds nothing.
ORDINARY_TEXT = {"empty", "emoji"}


@pytest.fixture
async def shop(app: Bicameral) -> dict[str, str]:
    """One of each: a product, a customer and their order, all searchable."""
    product = await app.commands.execute(
        c.CreateProduct(
            sku="K-1",
            name="Steel kettle",
            price=3490,
            currency="EUR",
            category="kitchen",
            tags=("steel",),
            initial_stock=5,
        ),
        actor=SYSTEM,
    )
    customer = await app.commands.execute(
        c.RegisterCustomer("ann@example.com", "Ann Lee"), actor=SYSTEM
    )
    order = await app.commands.execute(
        c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest("K-1", 1),)), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    return {
        "product": product.snapshot["id"],
        "customer": customer.snapshot["id"],
        "order": order.snapshot["id"],
    }


def sendable(result: ExecutionResult) -> dict[str, Any]:
    """The answer as the transport would send it: JSON, UTF-8, no internal error."""
    errors = [{"message": e.message, "extensions": e.extensions or {}} for e in result.errors or []]
    for error in errors:
        assert error["extensions"].get("code") != "INTERNAL_SERVER_ERROR", errors
    answer = {"data": result.data, "errors": errors}
    json.dumps(answer)  # as strawberry's views encode it: raises on what JSON cannot hold
    return answer


async def ask(app: Bicameral, query: str, value: Any) -> dict[str, Any]:
    result = await SCHEMA.execute(
        query,
        variable_values={"v": value},
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    return sendable(result)


def assert_refused(answer: dict[str, Any], argument: str) -> None:
    assert [e["extensions"] for e in answer["errors"]] == [
        {"code": "BAD_USER_INPUT", "argument": argument}
    ], answer["errors"]
    # The refusal does not echo what it refused: the message is plain UTF-8.
    assert len(answer["errors"][0]["message"].encode()) < 300


LOOKUPS = {
    "product.id": ("query($v: ID!) { product(id: $v) { id } }", "product"),
    "product.sku": ("query($v: String!) { product(sku: $v) { id } }", "product"),
    "order.id": ("query($v: ID!) { order(id: $v) { id } }", "order"),
    "customer.id": ("query($v: ID!) { customer(id: $v) { id } }", "customer"),
    "node.id": ("query($v: ID!) { node(id: $v) { id } }", "node"),
}


@pytest.mark.parametrize(("query", "field"), LOOKUPS.values(), ids=LOOKUPS.keys())
async def test_a_lookup_by_an_id_nothing_could_have_answers_null_as_a_missing_one(
    shop: dict[str, str], app: Bicameral, query: str, field: str
) -> None:
    for name, value in {**HOSTILE, "missing": "0b6f1c7e-0000-4000-8000-000000000000"}.items():
        answer = await ask(app, query, value)

        assert answer == {"data": {field: None}, "errors": []}, name
    # The guard lets the real ones through.
    owner = "product" if field == "node" else field  # node finds any of them
    real = "K-1" if "sku" in query else shop[owner]
    assert (await ask(app, query, real))["data"][field] == {"id": shop[owner]}


FILTERS = {
    "products.filter.categories": (
        "query($v: String!) { products(filter: {categories: [$v]}) "
        "{ totalCount facets { inStock } } }",
        "products",
    ),
    "products.filter.tags": (
        "query($v: String!) { products(filter: {tags: [$v]}) { totalCount facets { inStock } } }",
        "products",
    ),
    "orders.filter.customerId": (
        "query($v: ID!) { orders(filter: {customerId: $v}) { totalCount } }",
        "orders",
    ),
}


@pytest.mark.parametrize(("query", "field"), FILTERS.values(), ids=FILTERS.keys())
async def test_a_filter_value_nothing_could_have_matches_nothing(
    shop: dict[str, str], app: Bicameral, query: str, field: str
) -> None:
    for name, value in HOSTILE.items():
        answer = await ask(app, query, value)

        assert answer["errors"] == [], name
        assert answer["data"][field]["totalCount"] == 0, name
    real = shop["customer"] if "customerId" in query else "Kitchen" if "categ" in query else "steel"
    assert (await ask(app, query, real))["data"][field]["totalCount"] == 1


SEARCHES = {
    "products.search": "query($v: String) { products(search: $v) { totalCount } }",
    "customers.search": "query($v: String) { customers(search: $v) { totalCount } }",
}


@pytest.mark.parametrize("query", SEARCHES.values(), ids=SEARCHES.keys())
async def test_search_text_no_stored_text_could_hold_is_refused_naming_search(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    for name, value in HOSTILE.items():
        answer = await ask(app, query, value)

        if name in ORDINARY_TEXT:
            assert answer["errors"] == [], name
            # No search lists everything; the emoji are a search that finds nothing.
            assert next(iter(answer["data"].values()))["totalCount"] == (name == "empty"), name
        else:
            assert_refused(answer, "search")


async def test_a_prefix_no_name_could_start_with_is_refused_naming_prefix(
    shop: dict[str, str], app: Bicameral
) -> None:
    query = "query($v: String!) { productSuggestions(prefix: $v) { id } }"
    for name, value in HOSTILE.items():
        answer = await ask(app, query, value)

        if name == "emoji":
            assert answer == {"data": {"productSuggestions": []}, "errors": []}
        else:
            assert_refused(answer, "prefix")
    assert (await ask(app, query, "ket"))["data"]["productSuggestions"] == [{"id": shop["product"]}]


CURSORS = {
    "products.after": "query($v: String) { products(after: $v) { totalCount } }",
    "orders.after": "query($v: String) { orders(after: $v) { totalCount } }",
    "customers.after": "query($v: String) { customers(after: $v) { totalCount } }",
}
# Cursors a page never hands out, each well-formed base64 JSON.
FORGED_CURSORS = {
    "lone-surrogate-inside": encode_cursor(["\ud800", "id-1"]),
    "beyond-a-long": encode_cursor([2**63, "id-1"]),
    "boolean": encode_cursor([True, "id-1"]),
    "infinite": encode_cursor([float("inf"), "id-1"]),
    "huge-id": encode_cursor([1, "z" * 5000]),
}


@pytest.mark.parametrize("query", CURSORS.values(), ids=CURSORS.keys())
async def test_a_cursor_no_page_handed_out_is_refused_naming_after(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    for name, value in {**HOSTILE, **FORGED_CURSORS}.items():
        answer = await ask(app, query, value)

        if name == "empty":  # no cursor: the first page
            assert answer["errors"] == []
        else:
            assert_refused(answer, "after")


TOKENED = {
    "product": 'query($v: String) { product(sku: "K-1", consistencyToken: $v) { id } }',
    "products": "query($v: String) { products(consistencyToken: $v) { totalCount } }",
    "order": 'query($v: String) { order(id: "x", consistencyToken: $v) { id } }',
    "orders": "query($v: String) { orders(consistencyToken: $v) { totalCount } }",
    "customer": 'query($v: String) { customer(id: "x", consistencyToken: $v) { id } }',
    "customers": "query($v: String) { customers(consistencyToken: $v) { totalCount } }",
}


BEFORES = {
    "products.before": "query($v: String) { products(last: 5, before: $v) { totalCount } }",
    "orders.before": "query($v: String) { orders(last: 5, before: $v) { totalCount } }",
    "customers.before": "query($v: String) { customers(last: 5, before: $v) { totalCount } }",
}


@pytest.mark.parametrize("query", BEFORES.values(), ids=BEFORES.keys())
async def test_a_backward_cursor_no_page_handed_out_is_refused_naming_before(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    for name, value in {**HOSTILE, **FORGED_CURSORS}.items():
        answer = await ask(app, query, value)

        if name == "empty":  # no cursor: the last page
            assert answer["errors"] == []
        else:
            assert_refused(answer, "before")


@pytest.mark.parametrize("query", TOKENED.values(), ids=TOKENED.keys())
async def test_a_consistency_token_no_mutation_returned_is_refused_naming_it(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    beyond = ["-1", " 1", "+1", "1_000", "\u0661", "9007199254740992", "9" * 5000]
    for value in [*HOSTILE.values(), *beyond]:
        answer = await ask(app, query, value)

        assert_refused(answer, "consistencyToken")
    assert (await ask(app, query, "1"))["errors"] == []


FIRSTS = {
    "products": "query($v: Int!) { products(first: $v) { totalCount } }",
    "orders": "query($v: Int!) { orders(first: $v) { totalCount } }",
    "customers": "query($v: Int!) { customers(first: $v) { totalCount } }",
    "productSuggestions": 'query($v: Int!) { productSuggestions(prefix: "k", first: $v) { id } }',
}


@pytest.mark.parametrize("query", FIRSTS.values(), ids=FIRSTS.keys())
async def test_first_beyond_its_bounds_is_refused_naming_first(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    for value in (0, -1, 101, 2**31 - 1, -(2**31)):
        assert_refused(await ask(app, query, value), "first")
    for value in (2**31, 2**53, 1.5, "10"):  # not an Int at all
        answer = await ask(app, query, value)
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert (await ask(app, query, 100))["errors"] == []


TIMES = {
    "placedAfter": "query($v: DateTime) { orders(filter: {placedAfter: $v}) { totalCount } }",
    "placedBefore": "query($v: DateTime) { orders(filter: {placedBefore: $v}) { totalCount } }",
}


@pytest.mark.parametrize(("argument", "query"), TIMES.items(), ids=TIMES.keys())
async def test_a_time_is_a_time_with_an_offset_at_any_date(
    shop: dict[str, str], app: Bicameral, argument: str, query: str
) -> None:
    for value in HOSTILE.values():  # not a DateTime: refused before anything runs
        answer = await ask(app, query, value)
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert_refused(await ask(app, query, "2026-01-01T00:00:00"), f"filter.{argument}")
    earliest = await ask(app, query, "0001-01-01T00:00:00+14:00")
    latest = await ask(app, query, "9999-12-31T23:59:59.999999-14:00")
    assert earliest["errors"] == latest["errors"] == []
    counts = (earliest["data"]["orders"]["totalCount"], latest["data"]["orders"]["totalCount"])
    assert counts == ((1, 0) if argument == "placedAfter" else (0, 1))


AMOUNTS = {
    "minPrice": "query($v: Int) { products(filter: {minPrice: $v}) { totalCount } }",
    "maxPrice": "query($v: Int) { products(filter: {maxPrice: $v}) { totalCount } }",
    "minTotal": "query($v: Int) { orders(filter: {minTotal: $v}) { totalCount } }",
    "maxTotal": "query($v: Int) { orders(filter: {maxTotal: $v}) { totalCount } }",
}


@pytest.mark.parametrize(("argument", "query"), AMOUNTS.items(), ids=AMOUNTS.keys())
async def test_an_amount_at_the_edges_of_an_int_is_an_answer_or_a_named_refusal(
    shop: dict[str, str], app: Bicameral, argument: str, query: str
) -> None:
    lowest = await ask(app, query, -(2**31))
    highest = await ask(app, query, 2**31 - 1)

    if argument.endswith("Price"):  # a price is never negative
        assert_refused(lowest, f"filter.{argument}")
    else:
        assert lowest["errors"] == []
    assert highest["errors"] == []
    assert next(iter(highest["data"].values()))["totalCount"] == argument.startswith("max")


async def next_answer(app: Bicameral, query: str, value: Any) -> dict[str, Any]:
    stream = await SCHEMA.subscribe(
        query,
        variable_values={"v": value},
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    assert not isinstance(stream, ExecutionResult), stream
    try:
        async with asyncio.timeout(10):  # detects a subscription that never answers
            return sendable(await anext(stream))
    finally:
        await stream.aclose()


SUBSCRIPTION_IDS = {
    "productChanged.id": ("subscription($v: ID!) { productChanged(id: $v) { id } }", "id"),
    "orderChanged.id": ("subscription($v: ID!) { orderChanged(id: $v) { id } }", "id"),
    "ordersOfCustomer.customerId": (
        "subscription($v: ID!) { ordersOfCustomer(customerId: $v) { id } }",
        "customerId",
    ),
}


@pytest.mark.parametrize(("query", "argument"), SUBSCRIPTION_IDS.values(), ids=SUBSCRIPTION_IDS)
async def test_a_subscription_to_an_id_nothing_could_have_is_refused_naming_it(
    app: Bicameral, query: str, argument: str
) -> None:
    for value in HOSTILE.values():
        assert_refused(await next_answer(app, query, value), argument)


SUBSCRIPTION_AFTERS = {
    "changes.after": "subscription($v: String) { changes(after: $v) { id } }",
    "productChanged.after": (
        'subscription($v: String) { productChanged(id: "p", after: $v) { id } }'
    ),
    "orderChanged.after": 'subscription($v: String) { orderChanged(id: "o", after: $v) { id } }',
    "ordersOfCustomer.after": (
        'subscription($v: String) { ordersOfCustomer(customerId: "c", after: $v) { id } }'
    ),
}


@pytest.mark.parametrize("query", SUBSCRIPTION_AFTERS.values(), ids=SUBSCRIPTION_AFTERS)
async def test_a_resume_point_no_notification_carried_is_refused_naming_after(
    app: Bicameral, query: str
) -> None:
    for value in [*HOSTILE.values(), "-1", "9007199254740992"]:
        assert_refused(await next_answer(app, query, value), "after")


LASTS = {
    "products": "query($v: Int!) { products(last: $v) { totalCount } }",
    "orders": "query($v: Int!) { orders(last: $v) { totalCount } }",
    "customers": "query($v: Int!) { customers(last: $v) { totalCount } }",
}


@pytest.mark.parametrize("query", LASTS.values(), ids=LASTS.keys())
async def test_last_beyond_its_bounds_is_refused_naming_last(
    shop: dict[str, str], app: Bicameral, query: str
) -> None:
    for value in (0, -1, 101, 2**31 - 1, -(2**31)):
        assert_refused(await ask(app, query, value), "last")
    for value in (2**31, 2**53, 1.5, "10"):  # not an Int at all
        answer = await ask(app, query, value)
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert (await ask(app, query, 100))["errors"] == []
