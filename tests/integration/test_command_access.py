"""Who may change what, through the GraphQL schema over real write databases
(SQLite and PostgreSQL): the actor's right to the aggregate, self-registration,
idempotency keys per identity, and the audit stored with each event."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.bootstrap import Bicameral
from api.context import Context
from api.identity import ANONYMOUS, Identity, Role, customer_id_of
from api.schema import build_schema
from tests.identities import ADMIN, STAFF, customer
from writemodel import outbox
from writemodel.database import create_engine
from writemodel.migrate import migrate
from writemodel.tables import events, idempotency_keys

SCHEMA = build_schema()

FIELDS = "__typename ... on Error { code field message }"
SUCCESS = {
    "createProduct": "... on CreateProductSuccess { product { id } }",
    "changePrice": "... on ChangePriceSuccess { consistencyToken replayed product { id } }",
    "registerCustomer": "... on RegisterCustomerSuccess { customer { id email } }",
    "eraseCustomer": "... on EraseCustomerSuccess { customer { id erased } }",
    "placeOrder": "... on PlaceOrderSuccess { order { id status } }",
    "payOrder": "... on PayOrderSuccess { order { id status } }",
    "cancelOrder": "... on CancelOrderSuccess { order { id status } }",
    "receiveStock": (
        "... on ReceiveStockSuccess { consistencyToken replayed product { stock { onHand } } }"
    ),
}


async def mutate(
    app: Bicameral, who: Identity, field: str, input: dict[str, Any], key: str | None = None
) -> dict[str, Any]:
    kind = field[0].upper() + field[1:] + "Input"
    query = (
        f"mutation($input: {kind}!, $key: String) "
        f"{{ {field}(input: $input, idempotencyKey: $key) {{ {FIELDS} {SUCCESS[field]} }} }}"
    )
    result = await SCHEMA.execute(
        query,
        variable_values={"input": input, "key": key},
        context_value=Context(app=app, request=None, identity=who),
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload: dict[str, Any] = result.data[field]
    return payload


async def ok(app: Bicameral, who: Identity, field: str, input: dict[str, Any]) -> str:
    payload = await mutate(app, who, field, input)
    assert payload["__typename"].endswith("Success"), payload
    (value,) = (v for k, v in payload.items() if isinstance(v, dict))
    return str(value["id"])


async def head(app: Bicameral) -> int:
    async with app.engine.connect() as conn:
        position, _ = await outbox.head(conn)
    return position


async def forbidden(
    app: Bicameral, who: Identity, field: str, input: dict[str, Any], names: str | None
) -> None:
    """The call answers ForbiddenError naming `names`, and wrote nothing."""
    before = await head(app)

    payload = await mutate(app, who, field, input)

    assert payload["__typename"] == "ForbiddenError", payload
    assert (payload["code"], payload["field"]) == ("FORBIDDEN", names)
    assert await head(app) == before


async def refused_by_policy(
    app: Bicameral, who: Identity, field: str, input: dict[str, Any], code: str
) -> None:
    """The policy table refuses the call before it runs (api/policy.py); the command
    layer would refuse it too (its own tests call the service directly)."""
    before = await head(app)
    kind = field[0].upper() + field[1:] + "Input"
    result = await SCHEMA.execute(
        f"mutation($input: {kind}!) {{ {field}(input: $input) {{ __typename }} }}",
        variable_values={"input": input},
        context_value=Context(app=app, request=None, identity=who),
    )
    assert result.data is None
    assert [e.extensions for e in result.errors or ()] == [{"code": code, "field": field}]
    assert await head(app) == before


async def shop(app: Bicameral) -> tuple[str, str, str]:
    """A product MUG-1 (stock 10) and two customers who registered themselves."""
    product = await ok(
        app,
        STAFF,
        "createProduct",
        {"sku": "MUG-1", "name": "Mug", "price": 900, "currency": "EUR", "initialStock": 10},
    )
    ann = await ok(app, customer("ann-id"), "registerCustomer", {"email": "a@x.org", "name": "A"})
    bob = await ok(app, customer("bob-id"), "registerCustomer", {"email": "b@x.org", "name": "B"})
    return product, ann, bob


def order_for(customer_id: str) -> dict[str, Any]:
    return {"customerId": customer_id, "lines": [{"sku": "MUG-1", "quantity": 2}]}


async def test_a_customer_placing_an_order_for_another_is_forbidden_and_nothing_is_written(
    write_app: Bicameral,
) -> None:
    product, ann, bob = await shop(write_app)

    await forbidden(write_app, customer(ann), "placeOrder", order_for(bob), "customerId")
    placed = await ok(write_app, customer(ann), "placeOrder", order_for(ann))

    async with write_app.commands.unit_of_work() as uow:
        stock = await uow.stocks.get(product)
        order = await uow.orders.get(placed)
    assert stock is not None and stock.reserved == 2
    assert order is not None and order.customer_id == ann


async def test_an_anonymous_caller_changes_nothing(write_app: Bicameral) -> None:
    input = {"sku": "ANON-1", "name": "A", "price": 1, "currency": "EUR"}

    await refused_by_policy(write_app, ANONYMOUS, "createProduct", input, "UNAUTHENTICATED")


async def test_a_customer_cancels_their_own_unpaid_order_only(write_app: Bicameral) -> None:
    _, ann, bob = await shop(write_app)
    anns = await ok(write_app, customer(ann), "placeOrder", order_for(ann))
    paid = await ok(write_app, customer(ann), "placeOrder", order_for(ann))
    await ok(write_app, STAFF, "payOrder", {"orderId": paid})

    await forbidden(write_app, customer(bob), "cancelOrder", {"orderId": anns}, "orderId")
    await forbidden(write_app, customer(ann), "cancelOrder", {"orderId": paid}, "orderId")
    # An id that names no order answers as one that names someone else's.
    await forbidden(write_app, customer(bob), "cancelOrder", {"orderId": "no-such"}, "orderId")
    cancelled = await mutate(write_app, customer(ann), "cancelOrder", {"orderId": anns})
    by_staff = await mutate(write_app, STAFF, "cancelOrder", {"orderId": paid})

    assert cancelled["order"]["status"] == "CANCELLED"
    assert by_staff["order"]["status"] == "CANCELLED"


async def test_erasure_is_the_customers_own_or_an_admins(write_app: Bicameral) -> None:
    _, ann, bob = await shop(write_app)

    await forbidden(write_app, customer(ann), "eraseCustomer", {"customerId": bob}, "customerId")
    await refused_by_policy(write_app, STAFF, "eraseCustomer", {"customerId": bob}, "FORBIDDEN")
    own = await mutate(write_app, customer(ann), "eraseCustomer", {"customerId": ann})
    by_admin = await mutate(write_app, ADMIN, "eraseCustomer", {"customerId": bob})

    assert own["customer"] == {"id": ann, "erased": True}
    assert by_admin["customer"] == {"id": bob, "erased": True}


async def test_an_erasure_keeps_the_facts_and_who_did_it_but_not_the_data(
    write_app: Bicameral,
) -> None:
    ann = customer("ann-id", subject="ann-sub")
    await ok(write_app, ann, "registerCustomer", {"email": "ann@x.org", "name": "Ann"})

    await ok(write_app, ann, "eraseCustomer", {"customerId": "ann-id"})

    async with write_app.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    events.c.event_type,
                    events.c.payload,
                    events.c.actor_role,
                    events.c.actor_subject,
                )
                .where(events.c.aggregate_id == "ann-id")
                .order_by(events.c.position)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("CustomerRegistered", {}, "customer", "ann-sub"),
        ("CustomerErased", {}, "customer", "ann-sub"),
    ]


async def test_a_customer_registers_under_the_id_their_token_names_and_only_once(
    write_app: Bicameral,
) -> None:
    id = customer_id_of("https://issuer.example", "zoe")
    zoe = Identity(Role.CUSTOMER, subject="zoe", issuer="https://issuer.example", customer_id=id)

    first = await mutate(write_app, zoe, "registerCustomer", {"email": "z@x.org", "name": "Z"})
    again = await mutate(write_app, zoe, "registerCustomer", {"email": "y@x.org", "name": "Y"})
    by_staff = await ok(write_app, STAFF, "registerCustomer", {"email": "s@x.org", "name": "S"})

    assert first["customer"] == {"id": id, "email": "z@x.org"}
    assert (again["__typename"], again["code"]) == ("AlreadyExistsError", "ALREADY_REGISTERED")
    assert by_staff != id


async def test_concurrent_registrations_of_one_identity_register_it_once(
    write_app: Bicameral,
) -> None:
    zoe = customer("zoe-id")

    answers = await asyncio.gather(
        *(
            mutate(write_app, zoe, "registerCustomer", {"email": f"z{n}@x.org", "name": "Z"})
            for n in range(4)
        )
    )

    kinds = sorted(a["__typename"] for a in answers)
    assert kinds == ["AlreadyExistsError"] * 3 + ["RegisterCustomerSuccess"]
    assert {a["code"] for a in answers if "code" in a} == {"ALREADY_REGISTERED"}


async def test_two_identities_using_the_same_idempotency_key_get_independent_results(
    write_app: Bicameral,
) -> None:
    product, _, _ = await shop(write_app)
    other = Identity(Role.STAFF, subject="staff-2", issuer="tests")
    input = {"productId": product, "quantity": 5}

    first = await mutate(write_app, STAFF, "receiveStock", input, key="restock")
    second = await mutate(write_app, other, "receiveStock", input, key="restock")
    replay = await mutate(write_app, STAFF, "receiveStock", input, key="restock")

    assert (first["replayed"], second["replayed"], replay["replayed"]) == (False, False, True)
    assert replay["consistencyToken"] == first["consistencyToken"]
    assert second["product"]["stock"]["onHand"] == 20
    # The object as it is now (the other identity's receipt included), as a query
    # with the token shows it: a replay must not roll a client's cache back.
    assert replay["product"]["stock"]["onHand"] == 20
    async with write_app.engine.connect() as conn:
        scopes = (await conn.execute(select(idempotency_keys.c.scope))).scalars().all()
    assert len(scopes) == len(set(scopes)) == 2


async def test_who_changed_a_price_is_stored_with_its_event(write_app: Bicameral) -> None:
    product, _, _ = await shop(write_app)

    await ok(write_app, STAFF, "changePrice", {"productId": product, "price": 1100})
    await ok(write_app, ADMIN, "changePrice", {"productId": product, "price": 1200})

    async with write_app.engine.connect() as conn:
        who = (
            await conn.execute(
                select(events.c.actor_role, events.c.actor_subject)
                .where(events.c.aggregate_id == product, events.c.event_type == "PriceChanged")
                .order_by(events.c.position)
            )
        ).all()
    assert [tuple(row) for row in who] == [("staff", "staff-1"), ("admin", "admin-1")]


async def test_migration_0003_keeps_events_with_no_actor_and_starts_keys_afresh(
    database_url: str,
) -> None:
    engine: AsyncEngine = create_engine(database_url)
    try:
        await migrate(engine, "0002")
        # Rows as 0002 stored them, in its columns (the tables module is at the head).
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, "
                    "event_type, payload, occurred_at, correlation_id) VALUES "
                    "('Product', 'p-1', 1, 'PriceChanged', '{}', CURRENT_TIMESTAMP, 'old')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO idempotency_keys (key, request_hash, result, created_at, "
                    "expires_at) VALUES ('k', 'h', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )

        await migrate(engine)

        async with engine.connect() as conn:
            old = (
                await conn.execute(
                    select(events.c.event_type, events.c.actor_role, events.c.actor_subject)
                )
            ).one()
            keys = (await conn.execute(select(func.count()).select_from(idempotency_keys))).scalar()
    finally:
        await engine.dispose()
    assert tuple(old) == ("PriceChanged", None, None)
    assert keys == 0
