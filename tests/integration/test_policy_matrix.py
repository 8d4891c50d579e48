"""The policy matrix: every operation of the schema x every role, generated from
the policy table (api/policy.py) and run through the schema over real services.

An allowed call runs (a query or subscription answers without error, a
mutation answers no policy code: its own outcome, a typed error in its union
for arguments that name nothing, is the command layer's); a refused call
answers UNAUTHENTICATED when anonymous, FORBIDDEN when signed in, and runs
nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    get_named_type,
    is_composite_type,
)
from strawberry.types import ExecutionResult

from api.bootstrap import Bicameral
from api.context import Context
from api.identity import ANONYMOUS, Identity, Role
from api.policy import POLICY
from api.schema import build_schema
from domain import commands as c
from tests.identities import ADMIN, STAFF, customer
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

SCHEMA = build_schema()
GRAPHQL = SCHEMA._schema
POLICY_CODES = {"FORBIDDEN", "UNAUTHENTICATED"}
ROLES = [Role.ANONYMOUS, Role.CUSTOMER, Role.STAFF, Role.ADMIN]


@dataclass(frozen=True)
class World:
    product_id: str
    customer_id: str
    order_id: str

    def identity(self, role: Role) -> Identity:
        return {
            Role.ANONYMOUS: ANONYMOUS,
            Role.CUSTOMER: customer(self.customer_id),
            Role.STAFF: STAFF,
            Role.ADMIN: ADMIN,
        }[role]

    def arguments(self, root: str, field: str) -> dict[str, Any]:
        """Arguments naming this world's own objects, so an allowed call finds
        something (a subscription replays its first change from position 0)."""
        given: dict[tuple[str, str], dict[str, Any]] = {
            ("Query", "product"): {"id": self.product_id},
            ("Query", "order"): {"id": self.order_id},
            ("Query", "customer"): {"id": self.customer_id},
            # Every role may see the (active) product; the others as their own fields say.
            ("Query", "node"): {"id": self.product_id},
            ("Query", "nodes"): {"ids": [self.product_id, self.order_id, self.customer_id]},
            ("Subscription", "changes"): {"after": "0"},
            ("Subscription", "productChanged"): {"id": self.product_id, "after": "0"},
            ("Subscription", "orderChanged"): {"id": self.order_id, "after": "0"},
            ("Subscription", "ordersOfCustomer"): {"customerId": self.customer_id, "after": "0"},
        }
        return given.get((root, field), {})


@pytest.fixture
async def world(app: Bicameral) -> World:
    product = await app.commands.execute(
        c.CreateProduct(sku="M-1", name="Matrix", price=100, currency="EUR", initial_stock=5),
        actor=SYSTEM,
    )
    person = await app.commands.execute(c.RegisterCustomer("m@example.com", "Em"), actor=SYSTEM)
    order = await app.commands.execute(
        c.PlaceOrder(person.snapshot["id"], (c.OrderLineRequest("M-1", 1),)), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    await app.hub.pump()  # the hub's frontier: subscriptions replay up to it
    return World(product.snapshot["id"], person.snapshot["id"], order.snapshot["id"])


def sample(kind: GraphQLInputType) -> Any:
    """A value of an input type that passes GraphQL's coercion: each required
    input field filled, lists of one."""
    if isinstance(kind, GraphQLNonNull):
        return sample(kind.of_type)
    if isinstance(kind, GraphQLList):
        return [sample(kind.of_type)]
    if isinstance(kind, GraphQLEnumType):
        return next(iter(kind.values))
    if isinstance(kind, GraphQLInputObjectType):
        return {
            name: sample(f.type)
            for name, f in kind.fields.items()
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        }
    assert isinstance(kind, GraphQLScalarType)
    return {
        "Int": 1,
        "Long": 1,
        "Float": 1.0,
        "Boolean": True,
        "DateTime": "2026-01-01T00:00:00+00:00",
    }.get(kind.name, "no-such-thing")


def operation(world: World, root: str, name: str) -> tuple[str, dict[str, Any]]:
    """A document calling one root field with its required arguments (and the
    world's), selecting `__typename` of whatever it answers."""
    kind = {"Query": "query", "Mutation": "mutation", "Subscription": "subscription"}[root]
    field: GraphQLField = GRAPHQL.get_type(root).fields[name]  # type: ignore[union-attr]
    values = {
        arg: sample(a.type)
        for arg, a in field.args.items()
        if isinstance(a.type, GraphQLNonNull) and a.default_value is Undefined
    }
    values.update(world.arguments(root, name))
    declared = ", ".join(f"${arg}: {field.args[arg].type}" for arg in values)
    passed = ", ".join(f"{arg}: ${arg}" for arg in values)
    call = f"{name}({passed})" if values else name
    selection = " { __typename }" if is_composite_type(get_named_type(field.type)) else ""
    head = f"{kind}({declared})" if declared else kind
    return f"{head} {{ {call}{selection} }}", values


def codes(result: ExecutionResult) -> set[str]:
    return {(e.extensions or {}).get("code", "") for e in result.errors or ()}


async def first_result(stream: Any) -> ExecutionResult:
    if isinstance(stream, ExecutionResult):
        return stream
    try:
        # A generous deadline, to fail rather than hang: every allowed
        # subscription here has a change to replay at once.
        async with asyncio.timeout(30):
            return await anext(stream)
    finally:
        await stream.aclose()


async def run(world: World, app: Bicameral, root: str, name: str, role: Role) -> ExecutionResult:
    document, values = operation(world, root, name)
    context = Context(app=app, request=None, identity=world.identity(role))
    if root == "Subscription":
        stream = await SCHEMA.subscribe(document, variable_values=values, context_value=context)
        return await first_result(stream)
    return await SCHEMA.execute(document, variable_values=values, context_value=context)


async def test_every_operation_answers_every_role_as_the_policy_table_says(
    app: Bicameral, world: World
) -> None:
    # Queries and subscriptions first: the mutations then change the world.
    order = {"Query": 0, "Subscription": 1, "Mutation": 2}
    checked = 0
    for (root, name), entry in sorted(POLICY.items(), key=lambda item: order[item[0][0]]):
        for role in ROLES:
            result = await run(world, app, root, name, role)
            where = f"{root}.{name} as {role.value}: {result.errors}"
            if entry.rule_for(role) is None:
                expected = "UNAUTHENTICATED" if role is Role.ANONYMOUS else "FORBIDDEN"
                assert codes(result) == {expected}, where
                assert result.data is None, where
            elif root == "Mutation":
                assert not codes(result) & POLICY_CODES, where
                assert result.data is not None and result.data[name] is not None, where
            else:
                assert result.errors is None, where
                assert result.data is not None and result.data[name] is not None, where
            checked += 1
    assert checked == len(POLICY) * len(ROLES)
