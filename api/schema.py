"""The GraphQL schema: queries from the read side, mutations to the command layer.

`schema.graphql` at the repository's top is generated from this module
(`make schema`); a test fails when the two differ.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionResult
from strawberry.types.execution import ExecutionContext
from strawberry.types.graphql import OperationType

from api import telemetry
from api.budget import Buckets, QueryBudget
from api.execution import PlainFieldsExecutionContext
from api.extensions import ConsistencyReport, CostReport, MaskInternalErrors, with_error_codes
from api.instruments import RequestMetrics
from api.limits_rule import Limits, limits_rule
from api.mutations.adjust_stock import adjust_stock
from api.mutations.cancel_order import cancel_order
from api.mutations.change_price import change_price
from api.mutations.create_product import create_product
from api.mutations.discontinue_product import discontinue_product
from api.mutations.erase_customer import erase_customer
from api.mutations.pay_order import pay_order
from api.mutations.place_order import place_order
from api.mutations.receive_stock import receive_stock
from api.mutations.register_customer import register_customer
from api.mutations.ship_order import ship_order
from api.mutations.update_product import update_product
from api.node_role import NodeRoleGuard
from api.policy import Policy
from api.queries import Query
from api.settings import Settings
from api.subscriptions import Subscription
from api.types import SCALARS

__all__ = ["LIMITS", "build_schema", "schema"]

# Refused before execution, counted with every fragment spread expanded
# (api/limits.py says how, and docs/graphql.md lists them with their codes).
LIMITS = {
    "max_depth": 10,
    "max_aliases": 30,
    "max_fields": 500,
    "max_cost": 100_000,
    "max_repeated": 10,
    "max_fragments": 100,
    "max_tokens": 5000,
}

# The limits' validation rule, made once: the validation cache is keyed by the
# rule classes, so a rule made per request would never hit the cache (measured
# with the former limiters: every request paid 5-7 ms of validation).
_LIMIT_RULES = [
    limits_rule(
        Limits(
            max_depth=LIMITS["max_depth"],
            max_aliases=LIMITS["max_aliases"],
            max_fields=LIMITS["max_fields"],
            max_cost=LIMITS["max_cost"],
            max_repeated=LIMITS["max_repeated"],
            max_fragments=LIMITS["max_fragments"],
        )
    )
]


@strawberry.type(
    description=(
        "Every change goes through here. Each mutation takes one `input` and an optional "
        "`idempotencyKey`, and answers a union: its Success type (with a consistencyToken"
        " to read the write with), or a typed Error saying why nothing was written. A "
        "caller whose role may not use a mutation gets a GraphQL error (UNAUTHENTICATED "
        "or FORBIDDEN) instead."
    )
)
class Mutation:
    create_product = strawberry.mutation(
        resolver=create_product,
        description=(
            "Creates a product with its stock, on sale (ACTIVE) or as a DRAFT. Staff and "
            "admin only."
        ),
    )
    update_product = strawberry.mutation(
        resolver=update_product,
        description=(
            "Changes a product's name, description, category, tags or status; fields left"
            " null stay as they are. Staff and admin only."
        ),
    )
    change_price = strawberry.mutation(
        resolver=change_price,
        description=(
            "Sets a product's price (in minor units), and optionally its currency. Staff "
            "and admin only."
        ),
    )
    discontinue_product = strawberry.mutation(
        resolver=discontinue_product,
        description=(
            "Takes a product off sale for good: it can no longer be ordered, updated or "
            "repriced. Staff and admin only."
        ),
    )
    receive_stock = strawberry.mutation(
        resolver=receive_stock,
        description="Adds delivered units to a product's stock on hand. Staff and admin only.",
    )
    adjust_stock = strawberry.mutation(
        resolver=adjust_stock,
        description=(
            "Sets a product's stock on hand to a counted figure, with a reason. Staff and"
            " admin only."
        ),
    )
    register_customer = strawberry.mutation(
        resolver=register_customer,
        description=(
            "Registers a customer by a unique email. A customer's token registers itself,"
            " once; staff and admin register anyone."
        ),
    )
    erase_customer = strawberry.mutation(
        resolver=erase_customer,
        description=(
            "Erases a customer's name and email for good; their orders remain. A customer"
            " erases themself; admin anyone; staff may not."
        ),
    )
    place_order = strawberry.mutation(
        resolver=place_order,
        description=(
            "Places an order at today's prices and reserves stock for each line; all or "
            "nothing. A customer orders for themself; staff and admin for anyone."
        ),
    )
    pay_order = strawberry.mutation(
        resolver=pay_order,
        description="Marks a PLACED order as PAID. Staff and admin only.",
    )
    ship_order = strawberry.mutation(
        resolver=ship_order,
        description=(
            "Ships a PAID order: its reserved units leave stock and count as sold. Staff "
            "and admin only."
        ),
    )
    cancel_order = strawberry.mutation(
        resolver=cancel_order,
        description=(
            "Cancels a PLACED or PAID order and releases its reserved stock. A customer "
            "cancels their own orders until paid; staff and admin any."
        ),
    )


def _deadline(context: Any) -> float:
    """The request's deadline in seconds, from the settings its context carries."""
    settings = getattr(getattr(context, "app", None), "settings", None)
    return float(getattr(settings, "request_timeout", Settings.request_timeout))


def _deadline_exceeded(seconds: float) -> ExecutionResult:
    return ExecutionResult(
        data=None,
        errors=[
            GraphQLError(
                f"The operation did not finish within its deadline of {seconds:g} s. "
                "A mutation may or may not have been applied: send it again with the "
                "same idempotencyKey.",
                extensions={"code": "DEADLINE_EXCEEDED"},
            )
        ],
    )


class BicameralSchema(strawberry.Schema):
    """Every error gets its code, and every query or mutation its deadline.

    The deadline cancels the operation at its next await (a read from
    Elasticsearch, a consistency wait, a database call). Parsing and
    validation are synchronous and cannot be interrupted, which is why the
    token limit bounds the document and api/limits.py measures it in time
    linear in its size (its docstring says what it leaves to graphql-core)."""

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        seconds = _deadline(context_value)
        try:
            async with asyncio.timeout(seconds):
                result = await super().execute(
                    query,
                    variable_values=variable_values,
                    context_value=context_value,
                    root_value=root_value,
                    operation_name=operation_name,
                    allowed_operation_types=allowed_operation_types,
                    operation_extensions=operation_extensions,
                )
        except TimeoutError:
            result = _deadline_exceeded(seconds)
        with_error_codes(result.errors)
        return result

    async def _stream_non_subscription(
        self, execution_context: ExecutionContext, *args: Any, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """A query or mutation sent over a WebSocket gets the same deadline. (A
        subscription has none: it may rightly wait hours for its next change.)"""
        seconds = _deadline(execution_context.context)
        results = super()._stream_non_subscription(execution_context, *args, **kwargs)
        try:
            async with asyncio.timeout(seconds):
                first = await anext(results)
        except TimeoutError:
            await results.aclose()
            yield _deadline_exceeded(seconds)
            return
        except StopAsyncIteration:
            return
        yield first
        async for result in results:
            yield result


def build_schema(
    *,
    mask_errors: bool = True,
    introspection: bool = True,
    buckets: Buckets | None = None,
    role: str = "all",
) -> strawberry.Schema:
    # Factories: strawberry builds fresh extensions per request. The parser and
    # validation caches live at module level, so they still serve every request;
    # the budget's buckets live with the schema, one set per process.
    shared = Buckets() if buckets is None else buckets
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        RequestMetrics,
        *telemetry.tracing_extensions(),
        lambda: AddValidationRules(_LIMIT_RULES),
        lambda: MaxTokensLimiter(max_token_count=LIMITS["max_tokens"]),
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: MaskInternalErrors(mask=mask_errors),
        ConsistencyReport,
        lambda: CostReport(max_cost=LIMITS["max_cost"]),
        # A query or command node refuses what its role does not serve (api/node_role.py);
        # an `all` node has no such extension.
        *([lambda: NodeRoleGuard(role=role)] if role != "all" else []),
        # Deny by default: a caller the policy table does not let use every root
        # field of the operation gets none of it (api/policy.py).
        Policy,
        # Spends the cost from the client's bucket, or refuses (api/budget.py).
        lambda: QueryBudget(shared),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return BicameralSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
        # Plain scalar fields read their attribute directly (api/execution.py).
        execution_context_class=PlainFieldsExecutionContext,
    )


schema = build_schema()
