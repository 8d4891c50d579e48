"""Every mutation through GraphQL, on SQLite and PostgreSQL: its answer, and
its events in the outbox, written in the command's own transaction."""

from __future__ import annotations

from typing import Any

import pytest

from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from tests.identities import ADMIN
from writemodel import outbox

SCHEMA = build_schema()


class Session:
    """Runs mutations and reports the events each one appended."""

    def __init__(self, app: Bicameral) -> None:
        self.app = app
        self.position = 0

    async def run(self, field: str, selection: str, input: dict[str, Any], **extra: Any) -> Any:
        args = ", ".join(f"${k}: {t}" for k, t in [("input", f"{_input_type(field)}!")])
        extra_args = "".join(f", {k}: {v!r}".replace("'", '"') for k, v in extra.items())
        query = (
            f"mutation({args}) {{ {field}(input: $input{extra_args}) {{ __typename "
            f"... on Error {{ code field message }} {selection} }} }}"
        )
        result = await SCHEMA.execute(
            query,
            variable_values={"input": input},
            context_value=Context(app=self.app, request=None, identity=ADMIN),
        )
        assert result.errors is None, result.errors
        assert result.data is not None
        return result.data[field]

    async def new_events(self) -> list[str]:
        async with self.app.engine.connect() as conn:
            events = await outbox.read_after(conn, self.position, 1000)
        if events:
            self.position = events[-1].position
        return [e.event_type for e in events]


def _input_type(field: str) -> str:
    return field[0].upper() + field[1:] + "Input"


PRODUCT = (
    "... on %sSuccess { consistencyToken product { id version sku name status "
    "price { amount currency } stock { version onHand reserved available } unitsSold } }"
)
ORDER = (
    "... on %sSuccess { consistencyToken order { id version status total { amount } "
    "lines { sku quantity unitPrice { amount } } customer { id } } }"
)
CUSTOMER = "... on %sSuccess { consistencyToken customer { id version name email erased } }"


async def test_every_mutation_applies_and_appends_its_events(write_app: Bicameral) -> None:
    s = Session(write_app)

    created = await s.run(
        "createProduct",
        PRODUCT % "CreateProduct",
        {"sku": "mug-1", "name": "Mug", "price": 1200, "currency": "EUR", "initialStock": 5},
    )
    assert created["__typename"] == "CreateProductSuccess"
    product = created["product"]
    assert (product["sku"], product["stock"]["onHand"], product["status"]) == ("MUG-1", 5, "ACTIVE")
    assert await s.new_events() == ["ProductCreated", "StockReceived"]
    assert int(created["consistencyToken"]) == s.position

    updated = await s.run(
        "updateProduct",
        PRODUCT % "UpdateProduct",
        {"productId": product["id"], "name": "Big mug", "expectedVersion": 1},
    )
    assert updated["product"]["name"] == "Big mug" and updated["product"]["version"] == 2
    assert await s.new_events() == ["ProductUpdated"]

    priced = await s.run(
        "changePrice", PRODUCT % "ChangePrice", {"productId": product["id"], "price": 1500}
    )
    assert priced["product"]["price"] == {"amount": 1500, "currency": "EUR"}
    assert await s.new_events() == ["PriceChanged"]

    received = await s.run(
        "receiveStock",
        PRODUCT % "ReceiveStock",
        {"productId": product["id"], "quantity": 5, "expectedVersion": 1},
    )
    assert received["product"]["stock"]["onHand"] == 10
    assert await s.new_events() == ["StockReceived"]

    adjusted = await s.run(
        "adjustStock",
        PRODUCT % "AdjustStock",
        {"productId": product["id"], "onHand": 8, "reason": "stocktake"},
    )
    assert adjusted["product"]["stock"]["onHand"] == 8
    assert await s.new_events() == ["StockAdjusted"]

    registered = await s.run(
        "registerCustomer",
        CUSTOMER % "RegisterCustomer",
        {"email": "Eve@Example.com", "name": "Eve"},
    )
    customer = registered["customer"]
    assert customer["email"] == "eve@example.com"
    assert await s.new_events() == ["CustomerRegistered"]

    placed = await s.run(
        "placeOrder",
        ORDER % "PlaceOrder",
        {"customerId": customer["id"], "lines": [{"sku": "MUG-1", "quantity": 3}]},
    )
    order = placed["order"]
    assert (order["status"], order["total"]["amount"]) == ("PLACED", 4500)
    assert order["lines"] == [{"sku": "MUG-1", "quantity": 3, "unitPrice": {"amount": 1500}}]
    assert sorted(await s.new_events()) == ["OrderPlaced", "StockReserved"]

    paid = await s.run("payOrder", ORDER % "PayOrder", {"orderId": order["id"]})
    assert paid["order"]["status"] == "PAID"
    assert await s.new_events() == ["OrderPaid"]

    shipped = await s.run("shipOrder", ORDER % "ShipOrder", {"orderId": order["id"]})
    assert shipped["order"]["status"] == "SHIPPED"
    assert sorted(await s.new_events()) == ["OrderShipped", "StockCommitted"]

    second = await s.run(
        "placeOrder",
        ORDER % "PlaceOrder",
        {"customerId": customer["id"], "lines": [{"sku": "MUG-1", "quantity": 2}]},
    )
    await s.new_events()
    cancelled = await s.run(
        "cancelOrder",
        ORDER % "CancelOrder",
        {"orderId": second["order"]["id"], "reason": "changed mind"},
    )
    assert cancelled["order"]["status"] == "CANCELLED"
    assert sorted(await s.new_events()) == ["OrderCancelled", "StockReleased"]

    discontinued = await s.run(
        "discontinueProduct", PRODUCT % "DiscontinueProduct", {"productId": product["id"]}
    )
    assert discontinued["product"]["status"] == "DISCONTINUED"
    assert discontinued["product"]["stock"] == {
        "version": 7,
        "onHand": 5,
        "reserved": 0,
        "available": 5,
    }
    assert await s.new_events() == ["ProductDiscontinued"]

    erased = await s.run(
        "eraseCustomer", CUSTOMER % "EraseCustomer", {"customerId": customer["id"]}
    )
    assert erased["customer"] == {
        "id": customer["id"],
        "version": 2,
        "name": None,
        "email": None,
        "erased": True,
    }
    assert await s.new_events() == ["CustomerErased"]


@pytest.mark.parametrize(
    ("field", "input", "typename", "code", "error_field"),
    [
        (
            "createProduct",
            {"sku": "A-1", "name": "", "price": 1, "currency": "EUR"},
            "InvalidInputError",
            "TEXT_OUT_OF_BOUNDS",
            "name",
        ),
        (
            "createProduct",
            {"sku": "A-1", "name": "x" * 201, "price": 1, "currency": "EUR"},
            "InvalidInputError",
            "TEXT_OUT_OF_BOUNDS",
            "name",
        ),
        (
            "createProduct",
            {"sku": "A-1", "name": "A", "price": 1, "currency": "EURO"},
            "InvalidInputError",
            "CURRENCY_MALFORMED",
            "currency",
        ),
        (
            "receiveStock",
            {"productId": "nope", "quantity": 1},
            "NotFoundError",
            "NOT_FOUND",
            "productId",
        ),
        (
            "registerCustomer",
            {"email": "not-an-email", "name": "X"},
            "InvalidInputError",
            "EMAIL_MALFORMED",
            "email",
        ),
        (
            "placeOrder",
            {"customerId": "nope", "lines": [{"sku": "A-1", "quantity": 1}]},
            "NotFoundError",
            "NOT_FOUND",
            "customerId",
        ),
        (
            "placeOrder",
            {"customerId": "nope", "lines": []},
            "InvalidInputError",
            "ORDER_LINES_OUT_OF_BOUNDS",
            "lines",
        ),
        ("payOrder", {"orderId": "nope"}, "NotFoundError", "NOT_FOUND", "orderId"),
    ],
)
async def test_bad_input_gets_a_typed_error_and_writes_nothing(
    write_app: Bicameral,
    field: str,
    input: dict[str, Any],
    typename: str,
    code: str,
    error_field: str,
) -> None:
    s = Session(write_app)
    answer = await s.run(field, "", input)
    assert (answer["__typename"], answer["code"], answer["field"]) == (typename, code, error_field)
    assert await s.new_events() == []


async def test_negative_quantities_are_refused_before_any_write(write_app: Bicameral) -> None:
    s = Session(write_app)
    created = await s.run(
        "createProduct",
        PRODUCT % "CreateProduct",
        {"sku": "NEG-1", "name": "N", "price": 1, "currency": "EUR", "initialStock": 2},
    )
    await s.new_events()
    answer = await s.run(
        "receiveStock", "", {"productId": created["product"]["id"], "quantity": -3}
    )
    assert (answer["__typename"], answer["code"]) == ("InvalidInputError", "QUANTITY_NOT_POSITIVE")
    assert await s.new_events() == []


async def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(
    write_app: Bicameral,
) -> None:
    s = Session(write_app)
    created = await s.run(
        "createProduct",
        PRODUCT % "CreateProduct",
        {"sku": "VER-1", "name": "V", "price": 1, "currency": "EUR"},
    )
    await s.new_events()
    stale = await s.run(
        "changePrice",
        "... on VersionConflictError { expectedVersion actualVersion }",
        {"productId": created["product"]["id"], "price": 9, "expectedVersion": 7},
    )
    assert stale["__typename"] == "VersionConflictError"
    assert (stale["code"], stale["expectedVersion"], stale["actualVersion"]) == (
        "VERSION_CONFLICT",
        7,
        1,
    )
    assert await s.new_events() == []


async def test_an_idempotency_key_answers_the_first_result_again(write_app: Bicameral) -> None:
    s = Session(write_app)
    input = {"sku": "IDEM-1", "name": "I", "price": 1, "currency": "EUR"}
    selection = "... on CreateProductSuccess { replayed consistencyToken product { id } }"

    first = await s.run("createProduct", selection, input, idempotencyKey="k-1")
    await s.new_events()
    again = await s.run("createProduct", selection, input, idempotencyKey="k-1")
    other = await s.run(
        "createProduct", selection, {**input, "name": "other"}, idempotencyKey="k-1"
    )

    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["product"] == first["product"]
    assert again["consistencyToken"] == first["consistencyToken"]
    assert (other["__typename"], other["code"]) == ("RuleBrokenError", "IDEMPOTENCY_KEY_REUSED")
    assert await s.new_events() == []


async def test_a_mutation_reads_its_answer_back_in_one_statement(write_app: Bicameral) -> None:
    """Every projection's document is one statement: `Bicameral.document` reads it
    without a transaction on PostgreSQL (no BEGIN and ROLLBACK round trips), which
    shows the same snapshot only because a single statement has one."""
    from sqlalchemy import event

    from domain import commands as c
    from readmodel.projections import CustomersProjection, OrdersProjection, ProductsProjection
    from writemodel.access import SYSTEM

    run = write_app.commands.execute
    product = await run(
        c.CreateProduct(sku="ONE-1", name="One", price=500, currency="EUR", initial_stock=5),
        actor=SYSTEM,
    )
    customer = await run(c.RegisterCustomer(email="one@example.com", name="One"), actor=SYSTEM)
    order = await run(
        c.PlaceOrder(
            customer_id=customer.snapshot["id"],
            lines=(c.OrderLineRequest(sku="ONE-1", quantity=2),),
        ),
        actor=SYSTEM,
    )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    sync_engine = write_app.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        for projection, outcome in (
            (ProductsProjection(), product),
            (CustomersProjection(), customer),
            (OrdersProjection(), order),
        ):
            statements.clear()
            document = await write_app.document(projection, outcome.snapshot["id"])
            assert document is not None
            assert document["id"] == outcome.snapshot["id"]
            # SQLite's own deferred BEGIN stays (see writemodel/database.py's _on_begin).
            assert [s for s in statements if s != "BEGIN"] == ["SELECT"], statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
