"""The GraphQL schema: queries from the read side, mutations to the command layer.

`schema.graphql` at the repository's top is generated from this module
(`make schema`); a test fails when the two differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.types import ExecutionResult

from api.extensions import ConsistencyReport, MaskInternalErrors, with_error_codes
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
from api.queries import Query
from api.subscriptions import Subscription

__all__ = ["LIMITS", "build_schema", "schema"]

# Refused before execution; they hold against fragments too (strawberry >= 0.315.7).
LIMITS = {"max_depth": 10, "max_aliases": 30, "max_tokens": 5000}


# The limiters' validation rules, made once: each limiter instance makes new rule
# classes, and the validation cache is keyed by them, so rules made per request
# would never hit the cache (measured: every request paid 5-7 ms of validation).
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=LIMITS["max_depth"]).validation_rules,
    *MaxAliasesLimiter(max_alias_count=LIMITS["max_aliases"]).validation_rules,
]


@strawberry.type
class Mutation:
    create_product = strawberry.mutation(resolver=create_product)
    update_product = strawberry.mutation(resolver=update_product)
    change_price = strawberry.mutation(resolver=change_price)
    discontinue_product = strawberry.mutation(resolver=discontinue_product)
    receive_stock = strawberry.mutation(resolver=receive_stock)
    adjust_stock = strawberry.mutation(resolver=adjust_stock)
    register_customer = strawberry.mutation(resolver=register_customer)
    erase_customer = strawberry.mutation(resolver=erase_customer)
    place_order = strawberry.mutation(resolver=place_order)
    pay_order = strawberry.mutation(resolver=pay_order)
    ship_order = strawberry.mutation(resolver=ship_order)
    cancel_order = strawberry.mutation(resolver=cancel_order)


class BicameralSchema(strawberry.Schema):
    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        result = await super().execute(*args, **kwargs)
        with_error_codes(result.errors)
        return result


def build_schema(*, mask_errors: bool = True, introspection: bool = True) -> strawberry.Schema:
    # Factories: strawberry builds fresh extensions per request. The parser and
    # validation caches live at module level, so they still serve every request.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: AddValidationRules(_LIMIT_RULES),
        lambda: MaxTokensLimiter(max_token_count=LIMITS["max_tokens"]),
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: MaskInternalErrors(mask=mask_errors),
        ConsistencyReport,
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return BicameralSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )


schema = build_schema()
