"""Relay's object identification: the `Node` interface and `node`/`nodes` lookups.

A node's id is the object's own id, unchanged: the write side makes ids that
are unique across every type (UUIDs), so an id alone names one object, and
the clients and caches that already hold ids keep them (docs/graphql.md,
"Relay"). `node(id:)` therefore finds the type itself: one search over the
read models' aliases, each with the caller's rows for that type.

Access is exactly that of the type's own field: a product as `product` shows
it, an order as `order`, a customer as `customer` (api/policy.py). An object
the caller may not see is null, as a missing one is, so an id cannot be
probed for existence through `node`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import strawberry

from api.extensions import UserError
from api.policy import scope_of
from readmodel.queries import MAX_PAGE, Scope

__all__ = ["MAX_NODE_IDS", "Node", "find_nodes"]

# As many objects as the largest page of a connection.
MAX_NODE_IDS = MAX_PAGE

# Read model -> the root field whose access a node of it follows.
_FIELDS = {"products": "product", "orders": "order", "customers": "customer"}


@strawberry.interface(
    description="An object Relay can refetch by its id alone: the id is unique across "
    "every type (`node(id:)`)."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Unique across every type: `node(id:)` finds the object by it alone."
    )


def _scopes(context: Any) -> dict[str, Scope]:
    """Each read model the caller may read through its own field, with its rows."""
    scopes: dict[str, Scope] = {}
    for index, field in _FIELDS.items():
        found = scope_of(context, "Query", field)
        if found is not None:
            scopes[index] = found
    return scopes


async def find_nodes(
    info: strawberry.Info,
    ids: list[strawberry.ID],
    build: Mapping[str, Callable[[dict[str, Any]], Any]],
) -> list[Any]:
    """The object of each id (None where the caller may not see it or there is
    none), in the order asked; `build` makes the GraphQL object of a read model's
    document. At most `MAX_NODE_IDS` ids, else BAD_USER_INPUT naming `ids`."""
    if len(ids) > MAX_NODE_IDS:
        raise UserError(f"ids takes at most {MAX_NODE_IDS} ids", argument="ids")
    found = await info.context.app.reader.find([str(i) for i in ids], _scopes(info.context))
    return [None if hit is None else build[hit[0]](hit[1]) for hit in found]
