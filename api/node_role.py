"""What a node of each role refuses (NODE_ROLE, `bicameral serve --role`).

A query node serves queries and subscriptions and refuses mutations; a
command node serves mutations and refuses queries and subscriptions (a load
balancer routes by role, so one reaching the wrong node is a routing fault
to surface, not to half-serve). Either answers the one stable code
`WRONG_NODE_ROLE` before anything of the operation runs, with
`extensions.role` naming the node's role. Introspection alone (`__schema`,
`__type`, `__typename` and nothing else at the root) is a query every role
serves: tools read the schema from whichever node they reach (codegen,
GraphiQL, Apollo's possibleTypes), and it needs neither database. Where
introspection is off (the production profile), it is refused before this
guard runs. A query node whose change hub has
not started yet (it starts once the write database answers) refuses a
subscription with `WRITE_DATABASE_UNAVAILABLE`: try again later.

An `all` node does not get this extension at all, so its requests pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from api.policy import root_fields

__all__ = ["SERVED", "NodeRoleGuard"]

# The operations each role serves.
SERVED: dict[str, frozenset[OperationType]] = {
    "all": frozenset(OperationType),
    "query": frozenset({OperationType.QUERY, OperationType.SUBSCRIPTION}),
    "command": frozenset({OperationType.MUTATION}),
}
_PLURAL = {
    OperationType.QUERY: "queries",
    OperationType.MUTATION: "mutations",
    OperationType.SUBSCRIPTION: "subscriptions",
}
_ELSEWHERE = {
    "query": "send mutations to a command node",
    "command": "send queries and subscriptions to a query node",
}


class NodeRoleGuard(SchemaExtension):
    """Refuses, before execution, an operation this node's role does not serve."""

    def __init__(self, *, role: str) -> None:
        self.role = role

    def on_execute(self) -> Iterator[None]:
        self._check()
        yield

    def _check(self) -> None:
        execution = self.execution_context
        if execution.graphql_document is None or execution.result is not None:
            return  # nothing to run, or refused already
        kind = execution.operation_type
        if kind not in SERVED[self.role]:
            if kind is OperationType.QUERY and _introspection_only(execution):
                return  # the schema is every node's to tell
            self._refuse(
                GraphQLError(
                    f"this is a {self.role} node, which does not serve {_PLURAL[kind]}: "
                    f"{_ELSEWHERE[self.role]}",
                    extensions={"code": "WRONG_NODE_ROLE", "role": self.role},
                )
            )
        elif kind is OperationType.SUBSCRIPTION and not _hub_running(execution.context):
            self._refuse(
                GraphQLError(
                    "subscriptions on this query node wait for the write database, which "
                    "it has not reached yet; try again",
                    extensions={"code": "WRITE_DATABASE_UNAVAILABLE"},
                )
            )

    def _refuse(self, error: GraphQLError) -> None:
        execution = self.execution_context
        if execution.operation_type is OperationType.SUBSCRIPTION:
            # Strawberry answers an error raised here as the subscription's one result.
            raise error
        # A result set before execution is answered instead of executing.
        execution.result = GraphQLExecutionResult(data=None, errors=[error])


def _introspection_only(execution: Any) -> bool:
    """Whether the operation selects introspection fields only at its root."""
    _, fields = root_fields(execution.graphql_document, execution.operation_name)
    return not fields


def _hub_running(context: Any) -> bool:
    app = getattr(context, "app", None)
    return bool(getattr(app, "hub_running", True))
