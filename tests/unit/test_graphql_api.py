"""The real GraphQL schema over the fake unit of work: payloads, typed errors, query limits
and error masking. Nothing here reads Elasticsearch: every query is a mutation, an
introspection or `__typename`."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import strawberry
from strawberry.types import ExecutionResult

from api.context import Context
from api.identity import ANONYMOUS, Identity, Role
from api.mutations._command import MAX_KEY_LENGTH, actor_of
from api.schema import LIMITS, build_schema
from api.settings import Settings
from readmodel.documents import (
    Document,
    customer_document,
    order_document,
    order_line_document,
    product_document,
)
from readmodel.projections import OrdersProjection, ProductsProjection, Projection
from tests.identities import STAFF
from tests.unit.fakes import FakeClock, FakeStore, FakeUnitOfWork, sequential_ids
from writemodel.access import SYSTEM
from writemodel.service import CommandService
from writemodel.unit_of_work import CommitOutcomeUnknown, ConnectionLost


class FakeApp:
    """What resolvers reach through `info.context.app`, minus Elasticsearch."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.commands: Any = CommandService(
            lambda: FakeUnitOfWork(self.store), clock=FakeClock(), new_id=sequential_ids()
        )
        self.settings = Settings()
        self.committed_calls = 0

    def committed(self) -> None:
        self.committed_calls += 1

    async def document(self, projection: Projection[Any], id: str) -> Document | None:
        """What `Bicameral.document` reads from SQL, built by the same builders
        from the fake store (no update times: the fake keeps none)."""
        return fake_document(self.store, projection, id)


def fake_document(store: FakeStore, projection: Projection[Any], id: str) -> Document | None:
    if isinstance(projection, ProductsProjection):
        product, stock = store.products.get(id), store.stocks.get(id)
        if product is None:
            return None
        return product_document(
            id=product.id,
            version=product.version,
            sku=product.sku,
            name=product.name,
            description=product.description,
            category=product.category,
            tags=product.tags,
            price=product.price,
            currency=product.currency,
            status=product.status.value,
            created_at=product.created_at,
            updated_at=None,
            stock_version=None if stock is None else stock.version,
            on_hand=None if stock is None else stock.on_hand,
            reserved=None if stock is None else stock.reserved,
            units_sold=None if stock is None else stock.units_sold,
        )
    if isinstance(projection, OrdersProjection):
        order = store.orders.get(id)
        if order is None:
            return None
        customer = store.customers[order.customer_id]
        return order_document(
            id=order.id,
            version=order.version,
            status=order.status.value,
            currency=order.currency,
            total=order.total,
            placed_at=order.placed_at,
            paid_at=order.paid_at,
            shipped_at=order.shipped_at,
            cancelled_at=order.cancelled_at,
            updated_at=None,
            customer={
                "id": customer.id,
                "name": customer.name,
                "email": customer.email,
                "erased": customer.erased,
            },
            lines=[
                order_line_document(
                    product_id=ln.product_id,
                    sku=ln.sku,
                    product_name=store.products[ln.product_id].name,
                    quantity=ln.quantity,
                    unit_price=ln.unit_price,
                )
                for ln in order.lines
            ],
        )
    customer = store.customers.get(id)
    if customer is None:
        return None
    theirs = [o for o in store.orders.values() if o.customer_id == id]
    return customer_document(
        id=customer.id,
        version=customer.version,
        name=customer.name,
        email=customer.email,
        erased=customer.erased,
        order_count=len(theirs),
        total_spent=sum(o.total for o in theirs if o.status.value in ("paid", "shipped")),
        last_order_at=max((o.placed_at for o in theirs if o.placed_at), default=None),
        created_at=None,
        updated_at=None,
    )


class ExplodingCommands:
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals: postgres://admin:hunter2@db")


class FailingCommands:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


SCHEMA = build_schema()


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


async def run(
    query: str,
    app: FakeApp,
    variables: dict[str, Any] | None = None,
    schema: strawberry.Schema = SCHEMA,
    identity: Identity = STAFF,
) -> ExecutionResult:
    context = Context(app=app, request=None, identity=identity)  # type: ignore[arg-type]
    return await schema.execute(query, variable_values=variables, context_value=context)


CREATE_PRODUCT = """
mutation Create($input: CreateProductInput!, $key: String) {
  createProduct(input: $input, idempotencyKey: $key) {
    __typename
    ... on CreateProductSuccess {
      consistencyToken
      replayed
      product { id version sku name status price { amount currency } stock { onHand inStock } }
    }
    ... on Error { code field message }
  }
}
"""

REGISTER_CUSTOMER = """
mutation Register($input: RegisterCustomerInput!) {
  registerCustomer(input: $input) {
    __typename
    ... on RegisterCustomerSuccess { consistencyToken customer { id email name orderCount } }
    ... on Error { code field message }
  }
}
"""

PLACE_ORDER = """
mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on PlaceOrderSuccess {
      consistencyToken
      order {
        id status total { amount } customer { id }
        lines { sku quantity unitPrice { amount } }
      }
    }
    ... on Error { code field message }
  }
}
"""

CHANGE_PRICE = """
mutation Change($input: ChangePriceInput!) {
  changePrice(input: $input) {
    __typename
    ... on ChangePriceSuccess { product { version price { amount } } }
    ... on VersionConflictError { code field expectedVersion actualVersion }
  }
}
"""


def product_input(**changes: Any) -> dict[str, Any]:
    return {"sku": "kettle-1", "name": "Kettle", "price": 2599, "currency": "EUR", **changes}


async def create_product(app: FakeApp, key: str | None = None, **changes: Any) -> dict[str, Any]:
    result = await run(CREATE_PRODUCT, app, {"input": product_input(**changes), "key": key})
    assert result.errors is None
    assert result.data is not None
    payload: dict[str, Any] = result.data["createProduct"]
    return payload


# --- mutations ---


async def test_create_product_returns_the_product_and_a_consistency_token(app: FakeApp) -> None:
    payload = await create_product(app, initialStock=3)

    assert payload == {
        "__typename": "CreateProductSuccess",
        "consistencyToken": "2",
        "replayed": False,
        "product": {
            "id": "id-1",
            "version": 1,
            "sku": "KETTLE-1",
            "name": "Kettle",
            "status": "ACTIVE",
            "price": {"amount": 2599, "currency": "EUR"},
            "stock": {"onHand": 3, "inStock": True},
        },
    }
    assert app.store.head == 2
    assert app.committed_calls == 1


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"price": -1}, "PRICE_NOT_POSITIVE", "price"),
        ({"price": 0}, "PRICE_NOT_POSITIVE", "price"),
        ({"sku": "has spaces"}, "SKU_MALFORMED", "sku"),
        ({"sku": ""}, "SKU_MALFORMED", "sku"),
        ({"currency": "euros"}, "CURRENCY_MALFORMED", "currency"),
        ({"initialStock": -5}, "INITIAL_STOCK_NEGATIVE", "initialStock"),
    ],
)
async def test_create_product_with_bad_input_returns_a_typed_error(
    app: FakeApp, changes: dict[str, Any], code: str, field: str
) -> None:
    payload = await create_product(app, **changes)

    assert payload["__typename"] == "InvalidInputError"
    assert (payload["code"], payload["field"]) == (code, field)
    assert payload["message"]
    assert app.store.outbox == []
    assert app.committed_calls == 0


async def test_create_product_with_a_taken_sku_returns_already_exists(app: FakeApp) -> None:
    await create_product(app)

    payload = await create_product(app, sku="KETTLE-1")

    assert payload["__typename"] == "AlreadyExistsError"
    assert (payload["code"], payload["field"]) == ("SKU_TAKEN", "sku")


async def test_register_customer_returns_the_customer_with_its_read_side_figures(
    app: FakeApp,
) -> None:
    result = await run(
        REGISTER_CUSTOMER, app, {"input": {"email": "Ada@Example.com", "name": "Ada"}}
    )

    assert result.data == {
        "registerCustomer": {
            "__typename": "RegisterCustomerSuccess",
            "consistencyToken": "1",
            "customer": {
                "id": "id-1",
                "email": "ada@example.com",
                "name": "Ada",
                "orderCount": 0,
            },
        }
    }


@pytest.mark.parametrize("email", ["not-an-email", "ada@", "ada example@x.org"])
async def test_register_customer_with_a_malformed_email_returns_a_typed_error(
    app: FakeApp, email: str
) -> None:
    result = await run(REGISTER_CUSTOMER, app, {"input": {"email": email, "name": "Ada"}})

    assert result.errors is None
    assert result.data is not None
    payload = result.data["registerCustomer"]
    assert payload["__typename"] == "InvalidInputError"
    assert (payload["code"], payload["field"]) == ("EMAIL_MALFORMED", "email")
    assert app.store.customers == {}


async def test_place_order_returns_the_order_at_the_prices_of_the_moment(app: FakeApp) -> None:
    await create_product(app, initialStock=5)
    customer = await run(REGISTER_CUSTOMER, app, {"input": {"email": "a@b.org", "name": "A"}})
    assert customer.data is not None
    customer_id = customer.data["registerCustomer"]["customer"]["id"]

    result = await run(
        PLACE_ORDER,
        app,
        {"input": {"customerId": customer_id, "lines": [{"sku": "kettle-1", "quantity": 2}]}},
    )

    assert result.errors is None
    assert result.data is not None
    payload = result.data["placeOrder"]
    assert payload["__typename"] == "PlaceOrderSuccess"
    assert payload["consistencyToken"] == str(app.store.head)
    assert payload["order"]["status"] == "PLACED"
    assert payload["order"]["total"] == {"amount": 5198}
    assert payload["order"]["customer"] == {"id": customer_id}
    assert payload["order"]["lines"] == [
        {"sku": "KETTLE-1", "quantity": 2, "unitPrice": {"amount": 2599}}
    ]


async def test_place_order_for_an_unknown_customer_returns_not_found(app: FakeApp) -> None:
    await create_product(app, initialStock=5)

    result = await run(
        PLACE_ORDER,
        app,
        {"input": {"customerId": "nobody", "lines": [{"sku": "KETTLE-1", "quantity": 1}]}},
    )

    assert result.data is not None
    payload = result.data["placeOrder"]
    assert (payload["__typename"], payload["code"], payload["field"]) == (
        "NotFoundError",
        "NOT_FOUND",
        "customerId",
    )


async def test_place_order_with_101_lines_is_refused_before_the_command_runs(
    app: FakeApp,
) -> None:
    app.commands = ExplodingCommands()  # would fail the test if it were reached
    lines = [{"sku": f"SKU-{i}", "quantity": 1} for i in range(101)]

    result = await run(PLACE_ORDER, app, {"input": {"customerId": "c1", "lines": lines}})

    assert result.errors is None
    assert result.data is not None
    payload = result.data["placeOrder"]
    assert payload["__typename"] == "InvalidInputError"
    assert (payload["code"], payload["field"]) == ("ORDER_LINES_OUT_OF_BOUNDS", "lines")


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1)], ids=["empty", "oversized"])
async def test_an_idempotency_key_out_of_bounds_is_refused(app: FakeApp, key: str) -> None:
    payload = await create_product(app, key=key)

    assert payload["__typename"] == "InvalidInputError"
    assert payload["field"] == "idempotencyKey"
    assert app.store.products == {}
    assert app.store.idempotency_keys == {}


async def test_an_idempotency_key_of_the_longest_length_is_accepted(app: FakeApp) -> None:
    payload = await create_product(app, key="k" * MAX_KEY_LENGTH)

    assert payload["__typename"] == "CreateProductSuccess"


async def test_the_same_idempotency_key_twice_replays_the_first_answer(app: FakeApp) -> None:
    first = await create_product(app, key="create-kettle")

    second = await create_product(app, key="create-kettle")

    assert first["replayed"] is False
    assert second["replayed"] is True
    assert second["product"] == first["product"]
    assert second["consistencyToken"] == first["consistencyToken"]
    assert len(app.store.products) == 1


async def test_an_idempotency_key_reused_for_another_input_returns_a_typed_error(
    app: FakeApp,
) -> None:
    await create_product(app, key="create-kettle")

    payload = await create_product(app, key="create-kettle", name="Other kettle")

    assert payload["__typename"] == "RuleBrokenError"
    assert (payload["code"], payload["field"]) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")


async def test_a_stale_expected_version_returns_a_version_conflict(app: FakeApp) -> None:
    product = await create_product(app)

    result = await run(
        CHANGE_PRICE,
        app,
        {"input": {"productId": product["product"]["id"], "price": 5, "expectedVersion": 4}},
    )

    assert result.data == {
        "changePrice": {
            "__typename": "VersionConflictError",
            "code": "VERSION_CONFLICT",
            "field": "expectedVersion",
            "expectedVersion": 4,
            "actualVersion": 1,
        }
    }


# --- query limits ---

# No type of this schema nests deeper than four levels, and the depth limiter exempts
# introspection fields, so a query past the limit can only be written with fields the
# schema lacks: the limiter walks the document before the schema is consulted, and its
# own error is recognised by its message.
DEPTH_ERROR = f"exceeds maximum operation depth of {LIMITS['max_depth']}"


def nested_through_fragments(levels: int) -> str:
    """`levels` nested fields, each one level down in its own fragment."""
    fragments = [
        f"fragment F{i} on Query {{ f{i} {{ {f'...F{i + 1}' if i + 1 < levels else 'x'} }} }}"
        for i in range(levels)
    ]
    return "query Deep { ...F0 }\n" + "\n".join(fragments)


def nested_inline(levels: int) -> str:
    opening = "".join(f"f{i} {{ " for i in range(levels))
    return "query Deep { " + opening + "x" + " }" * levels + " }"


@pytest.mark.parametrize("build", [nested_through_fragments, nested_inline])
async def test_a_query_deeper_than_the_limit_is_refused_with_no_data(
    app: FakeApp, build: Any
) -> None:
    result = await run(build(LIMITS["max_depth"] + 1), app)

    assert result.data is None
    assert result.errors
    assert any(DEPTH_ERROR in error.message for error in result.errors)


async def test_a_query_at_the_depth_limit_is_not_refused_for_its_depth(app: FakeApp) -> None:
    result = await run(nested_through_fragments(LIMITS["max_depth"]), app)

    assert result.errors  # the fields do not exist...
    assert not any(DEPTH_ERROR in error.message for error in result.errors)  # ...but depth is fine


async def test_the_deepest_real_query_through_fragments_runs(app: FakeApp) -> None:
    query = """
    mutation {
      createProduct(input: {sku: "A", name: "A", price: 7, currency: "EUR"}) { ...Payload }
    }
    fragment Payload on CreateProductResult { ... on CreateProductSuccess { product { ...P } } }
    fragment P on Product { price { ...M } }
    fragment M on Money { amount }
    """

    result = await run(query, app)

    assert result.errors is None
    assert result.data == {"createProduct": {"product": {"price": {"amount": 7}}}}


async def test_deep_introspection_through_fragments_is_refused(app: FakeApp) -> None:
    query = """
    query { __schema { types { ...T1 } } }
    fragment T1 on __Type { fields { type { ...T2 } } }
    fragment T2 on __Type { fields { type { ...T3 } } }
    fragment T3 on __Type { fields { type { ...T4 } } }
    fragment T4 on __Type { fields { type { name } } }
    """

    result = await run(query, app)

    assert result.data is None
    assert result.errors
    assert "introspection depth" in result.errors[0].message


def aliases(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}: __typename" for i in range(count))


@pytest.mark.parametrize(
    "query",
    [
        "query { " + aliases("a", LIMITS["max_aliases"] + 1) + " }",
        "query { ...A ...B }\n"
        f"fragment A on Query {{ {aliases('a', LIMITS['max_aliases'] // 2 + 1)} }}\n"
        f"fragment B on Query {{ {aliases('b', LIMITS['max_aliases'] // 2)} }}",
    ],
    ids=["inline", "fragments"],
)
async def test_too_many_aliases_are_refused_with_no_data(app: FakeApp, query: str) -> None:
    result = await run(query, app)

    assert result.data is None
    assert result.errors
    assert f"Allowed: {LIMITS['max_aliases']}" in result.errors[0].message


async def test_aliases_up_to_the_limit_are_answered(app: FakeApp) -> None:
    half = LIMITS["max_aliases"] // 2
    query = (
        "query { ...A ...B }\n"
        f"fragment A on Query {{ {aliases('a', half)} }}\n"
        f"fragment B on Query {{ {aliases('b', LIMITS['max_aliases'] - half)} }}"
    )

    result = await run(query, app)

    assert result.errors is None
    assert result.data is not None
    assert len(result.data) == LIMITS["max_aliases"]
    assert set(result.data.values()) == {"Query"}


async def test_too_many_tokens_are_refused_with_no_data(app: FakeApp) -> None:
    query = "{ " + "__typename " * LIMITS["max_tokens"] + "}"

    result = await run(query, app)

    assert result.data is None
    assert result.errors
    assert f"more than {LIMITS['max_tokens']} tokens" in result.errors[0].message


@pytest.mark.parametrize(
    "query", ["{ __typename ", "{ " + "__typename " * LIMITS["max_tokens"] + "}"]
)
async def test_a_query_refused_while_parsing_still_has_an_error_code(
    app: FakeApp, query: str
) -> None:
    result = await run(query, app)

    assert result.errors
    assert (result.errors[0].extensions or {}).get("code")


async def test_a_validation_error_has_a_code(app: FakeApp) -> None:
    result = await run("{ noSuchField }", app)

    assert result.data is None
    assert result.errors
    assert result.errors[0].extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}


@pytest.mark.parametrize(
    "query",
    [
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Product") { fields { name } } }',
        "query { ...I } fragment I on Query { __schema { types { name } } }",
    ],
    ids=["schema", "type", "fragment"],
)
async def test_introspection_is_refused_when_turned_off(app: FakeApp, query: str) -> None:
    result = await run(query, app, schema=build_schema(introspection=False))

    assert result.data is None
    assert result.errors
    assert "introspection has been disabled" in result.errors[0].message


async def test_typename_is_still_answered_without_introspection(app: FakeApp) -> None:
    result = await run("{ __typename }", app, schema=build_schema(introspection=False))

    assert result.errors is None
    assert result.data == {"__typename": "Query"}


async def test_introspection_is_answered_by_default(app: FakeApp) -> None:
    result = await run("{ __schema { mutationType { name } } }", app)

    assert result.errors is None
    assert result.data == {"__schema": {"mutationType": {"name": "Mutation"}}}


# --- error masking ---


async def test_an_unexpected_error_reaches_the_client_masked_and_the_log_whole(
    app: FakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.commands = ExplodingCommands()

    with caplog.at_level(logging.ERROR, logger="api.errors"):
        result = await create_product_result(app)

    assert result.data is None
    assert result.errors is not None
    [error] = result.errors
    assert "secret" not in error.message
    assert "hunter2" not in str(error.formatted)
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR"}
    assert error.path == ["createProduct"]
    logged = [r for r in caplog.records if r.name == "api.errors"]
    assert logged
    assert logged[0].exc_info is not None
    assert "secret internals" in str(logged[0].exc_info[1])


async def test_an_unexpected_error_is_shown_when_masking_is_off(app: FakeApp) -> None:
    app.commands = ExplodingCommands()

    result = await create_product_result(app, schema=build_schema(mask_errors=False))

    assert result.errors is not None
    [error] = result.errors
    assert "secret internals" in error.message
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR"}


async def create_product_result(
    app: FakeApp, schema: strawberry.Schema = SCHEMA
) -> ExecutionResult:
    return await run(CREATE_PRODUCT, app, {"input": product_input()}, schema=schema)


@pytest.mark.parametrize(
    ("lost", "code", "says"),
    [
        (
            ConnectionLost("server closed the connection"),
            "WRITE_DATABASE_UNAVAILABLE",
            "nothing was written",
        ),
        (
            CommitOutcomeUnknown("server closed the connection"),
            "COMMIT_OUTCOME_UNKNOWN",
            "idempotencyKey",
        ),
    ],
)
async def test_a_write_database_that_went_away_is_a_coded_error_not_an_internal_one(
    app: FakeApp, lost: Exception, code: str, says: str
) -> None:
    app.commands = FailingCommands(lost)

    result = await run(CREATE_PRODUCT, app, {"input": product_input()})

    assert result.data is None
    assert result.errors is not None
    [error] = result.errors
    assert error.extensions == {"code": code}
    assert says in error.message
    assert "server closed" not in error.message  # the driver's words stay on the server
    assert app.committed_calls == 0


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_no_request_identity_becomes_the_system_actor(role: Role) -> None:
    actor = actor_of(Identity(role, subject="system", issuer="system", customer_id="c"))

    assert actor != SYSTEM
    assert actor.role == role.value != SYSTEM.role
    assert actor.idempotency_scope != SYSTEM.idempotency_scope


async def test_an_anonymous_mutation_is_refused_before_it_runs(app: FakeApp) -> None:
    result = await run(CREATE_PRODUCT, app, {"input": product_input()}, identity=ANONYMOUS)

    assert result.data is None
    assert result.errors is not None
    assert [e.extensions for e in result.errors] == [
        {"code": "UNAUTHENTICATED", "field": "createProduct"}
    ]


class UnreadableApp(FakeApp):
    """The write database goes away between a command's commit and its read-back."""

    async def document(self, projection: Projection[Any], id: str) -> Document | None:
        raise ConnectionRefusedError("connection refused")


async def test_a_committed_change_whose_object_cannot_be_read_back_says_it_committed() -> None:
    app = UnreadableApp()

    result = await run(CREATE_PRODUCT, app, {"input": product_input()})

    assert result.errors is not None
    assert [e.extensions for e in result.errors] == [
        {"code": "COMMIT_OUTCOME_UNKNOWN", "consistencyToken": str(app.store.head)}
    ]
    assert "was committed" in result.errors[0].message
    assert len(app.store.products) == 1  # it was


async def test_every_success_payload_implements_mutation_success(app: FakeApp) -> None:
    result = await run(
        '{ __type(name: "MutationSuccess") { possibleTypes { name } } '
        "__schema { mutationType { fields { name } } } }",
        app,
    )

    assert result.errors is None and result.data is not None
    implementing = {t["name"] for t in result.data["__type"]["possibleTypes"]}
    mutations = result.data["__schema"]["mutationType"]["fields"]
    assert implementing == {f["name"][0].upper() + f["name"][1:] + "Success" for f in mutations}
    assert len(implementing) == 12
