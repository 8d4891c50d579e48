"""Every mutation's errors through GraphQL, on SQLite and PostgreSQL: for each
way an input can be refused, the error's type, a code that says what went
wrong, and a `field` that names the input field as the client sent it
(camelCase, list positions as dotted indexes: `lines.1.quantity`), or none
when no input is at fault.

One table, run against one small shop per database; an error writes nothing,
so every row meets the same shop. Beside the expected values, every `field`
any row answers must be a path through the mutation's input type in the
schema, to a list position the client sent: a field name that drifts from
the input (`id` where the input says `orderId`) fails here even if the row
expecting it is wrong too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
)

from api.bootstrap import Bicameral
from api.context import Context
from api.identity import Identity
from api.schema import build_schema
from domain import commands as c
from domain.rules import MAX_INT, MAX_PRICE
from tests.identities import ADMIN, customer
from writemodel import outbox
from writemodel.access import SYSTEM

SCHEMA = build_schema()
GRAPHQL: GraphQLSchema = SCHEMA._schema


@dataclass
class Shop:
    """What the table's inputs refer to: ids made when the shop is built."""

    ids: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


async def build_shop(app: Bicameral) -> Shop:
    shop = Shop()

    async def run(name: str, command: c.Command) -> None:
        outcome = await app.commands.execute(command, actor=SYSTEM)
        shop.ids[name] = outcome.snapshot["id"]

    def product(sku: str, **extra: Any) -> c.CreateProduct:
        return c.CreateProduct(
            **{"sku": sku, "name": sku, "price": 1000, "currency": "EUR", **extra}
        )

    await run("product", product("A-1", initial_stock=5))
    await run("dollar", product("U-1", currency="USD", initial_stock=5))
    await run("draft", product("D-1", status="draft", initial_stock=5))
    await run("gone", product("G-1", initial_stock=5))
    await app.commands.execute(c.DiscontinueProduct(product_id=shop["gone"]), actor=SYSTEM)
    await run("dear", product("B-1", price=MAX_PRICE, initial_stock=5))
    await run("ann", c.RegisterCustomer(email="ann@example.com", name="Ann"))
    await run("bob", c.RegisterCustomer(email="bob@example.com", name="Bob"))
    await run("eve", c.RegisterCustomer(email="eve@example.com", name="Eve"))
    await app.commands.execute(c.EraseCustomer(customer_id=shop["eve"]), actor=SYSTEM)

    def order() -> c.PlaceOrder:
        return c.PlaceOrder(customer_id=shop["ann"], lines=(c.OrderLineRequest("A-1", 1),))

    await run("placed", order())
    await run("paid", order())
    await app.commands.execute(c.PayOrder(order_id=shop["paid"]), actor=SYSTEM)
    await run("shipped", order())
    await app.commands.execute(c.PayOrder(order_id=shop["shipped"]), actor=SYSTEM)
    await app.commands.execute(c.ShipOrder(order_id=shop["shipped"]), actor=SYSTEM)
    return shop


Input = Callable[[Shop], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    mutation: str
    input: Input
    typename: str
    code: str
    field: str | None
    # admin, ann (a customer) or bob (another). A role the policy table refuses a
    # mutation never reaches it: that is a request error, not a typed one.
    who: str = "admin"
    idempotency_key: str | None = None


def line(sku: str = "A-1", quantity: int = 1) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


def order_of(*lines: dict[str, Any], who: str = "ann") -> Input:
    return lambda s: {"customerId": s[who], "lines": list(lines)}


def new(**changes: Any) -> Input:
    return lambda s: {"sku": "NEW-1", "name": "New", "price": 100, "currency": "EUR", **changes}


def on(key: str, which: str, /, **changes: Any) -> Input:
    """An input naming the shop's `which` (a product, an order...) under `key`."""
    return lambda s: {key: s[which], **changes}


def product(which: str = "product", /, **changes: Any) -> Input:
    return on("productId", which, **changes)


def order(which: str, /, **changes: Any) -> Input:
    return on("orderId", which, **changes)


def fixed(**values: Any) -> Input:
    return lambda s: dict(values)


BAD = "InvalidInputError"
RULE = "RuleBrokenError"
MISSING = "NotFoundError"
TAKEN = "AlreadyExistsError"
DENIED = "ForbiddenError"
STALE = "VersionConflictError"

TABLE: list[Row] = [
    # createProduct
    Row("createProduct", new(sku="no spaces"), BAD, "SKU_MALFORMED", "sku"),
    Row("createProduct", new(sku="a-1"), TAKEN, "SKU_TAKEN", "sku"),
    Row("createProduct", new(name=""), BAD, "TEXT_OUT_OF_BOUNDS", "name"),
    Row("createProduct", new(name="a\u0000b"), BAD, "TEXT_INVALID_CHARACTERS", "name"),
    Row("createProduct", new(description="d" * 5001), BAD, "TEXT_OUT_OF_BOUNDS", "description"),
    Row("createProduct", new(category="c" * 101), BAD, "TEXT_OUT_OF_BOUNDS", "category"),
    Row("createProduct", new(tags=["ok", "t" * 51]), BAD, "TEXT_OUT_OF_BOUNDS", "tags.1"),
    Row("createProduct", new(tags=[f"t{i}" for i in range(21)]), BAD, "TOO_MANY_TAGS", "tags"),
    Row("createProduct", new(price=0), BAD, "PRICE_NOT_POSITIVE", "price"),
    Row("createProduct", new(currency="EURO"), BAD, "CURRENCY_MALFORMED", "currency"),
    Row("createProduct", new(status="DISCONTINUED"), RULE, "PRODUCT_DISCONTINUED", "status"),
    Row("createProduct", new(initialStock=-1), BAD, "INITIAL_STOCK_NEGATIVE", "initialStock"),
    Row("createProduct", new(initialStock=MAX_INT), BAD, "QUANTITY_TOO_LARGE", "initialStock"),
    Row(
        "createProduct",
        new(),
        BAD,
        "IDEMPOTENCY_KEY_OUT_OF_BOUNDS",
        "idempotencyKey",
        idempotency_key="",
    ),
    Row(
        "createProduct",
        new(),
        BAD,
        "TEXT_INVALID_CHARACTERS",
        "idempotencyKey",
        idempotency_key="k\u0000",
    ),
    # updateProduct
    Row("updateProduct", fixed(productId="no such id!"), BAD, "ID_MALFORMED", "productId"),
    Row("updateProduct", fixed(productId="nope"), MISSING, "NOT_FOUND", "productId"),
    Row("updateProduct", product("gone", name="X"), RULE, "PRODUCT_DISCONTINUED", "productId"),
    Row(
        "updateProduct",
        product(status="DRAFT"),
        RULE,
        "ACTIVE_CANNOT_RETURN_TO_DRAFT",
        "status",
    ),
    Row(
        "updateProduct",
        product(status="DISCONTINUED"),
        RULE,
        "DISCONTINUE_WITH_ITS_OWN_COMMAND",
        "status",
    ),
    Row("updateProduct", product(tags=["a\u0007"]), BAD, "TEXT_INVALID_CHARACTERS", "tags.0"),
    Row("updateProduct", product(name=" "), BAD, "TEXT_OUT_OF_BOUNDS", "name"),
    Row("updateProduct", product(expectedVersion=99), STALE, "VERSION_CONFLICT", "expectedVersion"),
    # changePrice
    Row("changePrice", product(price=-1), BAD, "PRICE_NOT_POSITIVE", "price"),
    Row("changePrice", product(price=1, currency="E"), BAD, "CURRENCY_MALFORMED", "currency"),
    Row("changePrice", product("gone", price=5), RULE, "PRODUCT_DISCONTINUED", "productId"),
    Row("changePrice", fixed(productId="nope", price=5), MISSING, "NOT_FOUND", "productId"),
    Row(
        "changePrice",
        product(price=5, expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    # discontinueProduct
    Row("discontinueProduct", fixed(productId="nope"), MISSING, "NOT_FOUND", "productId"),
    Row(
        "discontinueProduct",
        product(expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    # receiveStock
    Row("receiveStock", product(quantity=0), BAD, "QUANTITY_NOT_POSITIVE", "quantity"),
    Row("receiveStock", product(quantity=MAX_INT), BAD, "QUANTITY_TOO_LARGE", "quantity"),
    Row("receiveStock", fixed(productId="nope", quantity=1), MISSING, "NOT_FOUND", "productId"),
    Row(
        "receiveStock",
        product(quantity=1, expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    # adjustStock
    Row("adjustStock", product(onHand=-1), RULE, "STOCK_CANNOT_GO_NEGATIVE", "onHand"),
    Row("adjustStock", product(onHand=10**9 + 1), RULE, "STOCK_LIMIT_EXCEEDED", "onHand"),
    Row("adjustStock", product(onHand=0), RULE, "RESERVED_CANNOT_EXCEED_ON_HAND", "onHand"),
    Row("adjustStock", product(onHand=9, reason="r" * 201), BAD, "TEXT_OUT_OF_BOUNDS", "reason"),
    Row("adjustStock", fixed(productId="nope", onHand=1), MISSING, "NOT_FOUND", "productId"),
    # registerCustomer
    Row("registerCustomer", fixed(email="nope", name="N"), BAD, "EMAIL_MALFORMED", "email"),
    Row(
        "registerCustomer",
        fixed(email="ANN@example.com", name="N"),
        TAKEN,
        "EMAIL_TAKEN",
        "email",
    ),
    Row(
        "registerCustomer", fixed(email="n@example.com", name=""), BAD, "TEXT_OUT_OF_BOUNDS", "name"
    ),
    Row(
        "registerCustomer",
        fixed(email="n@example.com", name="N"),
        TAKEN,
        "ALREADY_REGISTERED",
        None,
        who="ann",
    ),
    # eraseCustomer
    Row("eraseCustomer", fixed(customerId="nope"), MISSING, "NOT_FOUND", "customerId"),
    Row("eraseCustomer", fixed(customerId="no such id!"), BAD, "ID_MALFORMED", "customerId"),
    Row("eraseCustomer", on("customerId", "bob"), DENIED, "FORBIDDEN", "customerId", who="ann"),
    Row(
        "eraseCustomer",
        on("customerId", "bob", expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    # placeOrder
    Row("placeOrder", order_of(), BAD, "ORDER_LINES_OUT_OF_BOUNDS", "lines"),
    Row("placeOrder", order_of(*[line()] * 101), BAD, "ORDER_LINES_OUT_OF_BOUNDS", "lines"),
    Row("placeOrder", order_of(line(), who="eve"), RULE, "CUSTOMER_ERASED", "customerId"),
    Row(
        "placeOrder",
        lambda s: {"customerId": "nope", "lines": [line()]},
        MISSING,
        "NOT_FOUND",
        "customerId",
    ),
    Row("placeOrder", order_of(line(), who="bob"), DENIED, "FORBIDDEN", "customerId", who="ann"),
    Row("placeOrder", order_of(line(), line("a b")), BAD, "SKU_MALFORMED", "lines.1.sku"),
    Row("placeOrder", order_of(line(), line("NONE-1")), MISSING, "NOT_FOUND", "lines.1.sku"),
    Row("placeOrder", order_of(line(), line(" a-1 ")), BAD, "DUPLICATE_SKU", "lines.1.sku"),
    Row(
        "placeOrder",
        order_of(line(), line("D-1")),
        RULE,
        "PRODUCT_NOT_ORDERABLE",
        "lines.1.sku",
    ),
    Row(
        "placeOrder",
        order_of(line(), line("G-1")),
        RULE,
        "PRODUCT_NOT_ORDERABLE",
        "lines.1.sku",
    ),
    Row(
        "placeOrder",
        order_of(line(), line("B-1", 0)),
        BAD,
        "QUANTITY_NOT_POSITIVE",
        "lines.1.quantity",
    ),
    Row(
        "placeOrder",
        order_of(line(), line("B-1", MAX_INT)),
        BAD,
        "QUANTITY_TOO_LARGE",
        "lines.1.quantity",
    ),
    Row(
        "placeOrder",
        order_of(line(), line("B-1", 6)),
        RULE,
        "INSUFFICIENT_STOCK",
        "lines.1.quantity",
    ),
    Row("placeOrder", order_of(line(), line("U-1")), RULE, "MIXED_CURRENCIES", "lines"),
    Row("placeOrder", order_of(line("B-1", 2)), RULE, "ORDER_TOTAL_TOO_LARGE", "lines"),
    # payOrder, shipOrder, cancelOrder
    Row("payOrder", fixed(orderId="nope"), MISSING, "NOT_FOUND", "orderId"),
    Row("payOrder", fixed(orderId="no such id!"), BAD, "ID_MALFORMED", "orderId"),
    Row("payOrder", order("shipped"), RULE, "ILLEGAL_STATUS_TRANSITION", "orderId"),
    Row(
        "payOrder",
        order("placed", expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    Row("shipOrder", order("placed"), RULE, "ILLEGAL_STATUS_TRANSITION", "orderId"),
    Row("shipOrder", fixed(orderId="nope"), MISSING, "NOT_FOUND", "orderId"),
    Row(
        "shipOrder",
        order("paid", expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
    Row("cancelOrder", order("shipped"), RULE, "ILLEGAL_STATUS_TRANSITION", "orderId"),
    Row("cancelOrder", order("paid"), DENIED, "FORBIDDEN", "orderId", who="ann"),
    Row("cancelOrder", order("placed"), DENIED, "FORBIDDEN", "orderId", who="bob"),
    Row("cancelOrder", fixed(orderId="nope"), DENIED, "FORBIDDEN", "orderId", who="bob"),
    Row("cancelOrder", order("placed", reason="r" * 201), BAD, "TEXT_OUT_OF_BOUNDS", "reason"),
    Row(
        "cancelOrder",
        order("placed", expectedVersion=99),
        STALE,
        "VERSION_CONFLICT",
        "expectedVersion",
    ),
]


def _input_type(mutation: str) -> GraphQLInputType:
    assert GRAPHQL.mutation_type is not None
    return GRAPHQL.mutation_type.fields[mutation].args["input"].type


def _unwrap(kind: GraphQLInputType) -> GraphQLInputType:
    return kind.of_type if isinstance(kind, GraphQLNonNull) else kind


def names_an_input_field(mutation: str, path: str, sent: dict[str, Any]) -> bool:
    """Whether `path` leads through the mutation's arguments and input type,
    list positions included, to something the client sent or defaulted."""
    assert GRAPHQL.mutation_type is not None
    arguments = GRAPHQL.mutation_type.fields[mutation].args
    first, *rest = path.split(".")
    if first in arguments and first != "input":
        return not rest
    kind: GraphQLInputType = _unwrap(_input_type(mutation))
    value: Any = sent
    for part in [first, *rest]:
        if isinstance(kind, GraphQLList):
            if not part.isdigit() or not isinstance(value, list) or int(part) >= len(value):
                return False
            kind, value = _unwrap(kind.of_type), value[int(part)]
        elif isinstance(kind, GraphQLInputObjectType):
            if part not in kind.fields:
                return False
            kind = _unwrap(kind.fields[part].type)
            value = value.get(part) if isinstance(value, dict) else None
        else:
            return False
    return True


async def answer(app: Bicameral, row: Row, sent: dict[str, Any], identity: Identity) -> Any:
    input_type = _input_type(row.mutation)
    query = (
        f"mutation($input: {input_type}, $key: String) "
        f"{{ {row.mutation}(input: $input, idempotencyKey: $key) "
        "{ __typename ... on Error { code field message } } }"
    )
    result = await SCHEMA.execute(
        query,
        variable_values={"input": sent, "key": row.idempotency_key},
        context_value=Context(app=app, request=None, identity=identity),
    )
    assert result.errors is None, (row, result.errors)
    assert result.data is not None
    return result.data[row.mutation]


async def test_every_refused_input_gets_a_fitting_code_and_names_its_input_field(
    write_app: Bicameral,
) -> None:
    shop = await build_shop(write_app)
    async with write_app.engine.connect() as conn:
        head = (await outbox.read_after(conn, 0, 10_000))[-1].position
    identities = {
        "admin": ADMIN,
        "ann": customer(shop["ann"]),
        "bob": customer(shop["bob"]),
    }

    wrong, unnamed = [], []
    for row in TABLE:
        sent = row.input(shop)
        got = await answer(write_app, row, sent, identities[row.who])
        expected = (row.typename, row.code, row.field)
        if (got["__typename"], got["code"], got["field"]) != expected:
            wrong.append((row.mutation, sent, expected, got))
        if got["field"] is not None and not names_an_input_field(row.mutation, got["field"], sent):
            unnamed.append((row.mutation, got["field"]))

    assert wrong == []
    assert unnamed == []
    # Refused, so nothing was written.
    async with write_app.engine.connect() as conn:
        assert await outbox.read_after(conn, head, 10) == []


def test_the_table_covers_every_mutation() -> None:
    assert GRAPHQL.mutation_type is not None
    assert {row.mutation for row in TABLE} == set(GRAPHQL.mutation_type.fields)


def test_a_field_path_is_checked_against_the_input_type_and_what_was_sent() -> None:
    sent = {"customerId": "c", "lines": [line(), line()]}

    assert names_an_input_field("placeOrder", "lines.1.quantity", sent)
    assert names_an_input_field("placeOrder", "idempotencyKey", sent)
    assert not names_an_input_field("placeOrder", "lines.2.quantity", sent)
    assert not names_an_input_field("placeOrder", "lines.1.unitPrice", sent)
    assert not names_an_input_field("payOrder", "id", {"orderId": "o"})
