"""Who may call what: the one policy table, deny by default.

Every root field of the schema (each query, mutation and subscription) has an
entry here saying, per role, which rows the caller may reach (a `Rule`); a
role the entry does not name may not call the field at all. A root field with
no entry is refused to everyone, so a new field cannot run before somebody
decided who may call it (tests/unit/test_policy_table.py also holds the table
to `schema.graphql`, in both directions).

Two places read the table:

- `Policy`, a schema extension, checks every root field of an operation
  before any resolver runs: an anonymous caller refused answers
  `UNAUTHENTICATED` ("sign in"), a signed-in one `FORBIDDEN`; nothing of the
  operation executes.
- Resolvers ask `rule(info)` for the row rule that applies to the caller and
  hand it to the read side's query builders (readmodel/queries.py, `Scope`),
  which put it into the Elasticsearch query itself: counts, facets and
  cursors then cannot see other rows. Mutations' row rules (own order, own
  customer) are the command layer's to check, in the transaction that loads
  the aggregate; the table states them so that one place says them all.

docs/policy.md shows this table; a test holds the two to each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from api.identity import ANONYMOUS, Identity, Role
from readmodel.queries import Scope

__all__ = [
    "POLICY",
    "Entry",
    "Policy",
    "Refused",
    "Rule",
    "allowed",
    "check",
    "markdown_table",
    "root_fields",
    "rule",
    "scope",
    "scope_of",
    "sees_contact_details",
]


class Rule(Enum):
    """Which rows a role reaches through a field. A role with no rule is refused."""

    ALL = "all"
    # Products whose status is active; drafts and discontinued ones are not there.
    ACTIVE_ONLY = "active only"
    # The caller's own customer (its id is the identity's customer id).
    SELF = "self"
    # Orders of the caller's own customer.
    OWN_ORDERS = "own orders"
    # Own orders still unpaid (cancelOrder; checked by the command layer).
    OWN_UNPAID = "own unpaid orders"
    # Relay's node lookups: each object as its own type's field (product, order,
    # customer) lets the caller see it; api/node.py applies those entries.
    AS_ITS_TYPE = "as its type's field"


@dataclass(frozen=True)
class Entry:
    """One field's rule per role; None: that role may not call it."""

    anonymous: Rule | None = None
    customer: Rule | None = None
    staff: Rule | None = None
    admin: Rule | None = None

    def rule_for(self, role: Role) -> Rule | None:
        rule: Rule | None = getattr(self, role.value)
        return rule


_STAFF = Entry(staff=Rule.ALL, admin=Rule.ALL)
_CATALOG = Entry(
    anonymous=Rule.ACTIVE_ONLY, customer=Rule.ACTIVE_ONLY, staff=Rule.ALL, admin=Rule.ALL
)
# Suggestions show what `products` shows by default, for every caller: active
# products only (readmodel/queries.product_suggest narrows to them as well).
_SUGGESTIONS = Entry(
    anonymous=Rule.ACTIVE_ONLY,
    customer=Rule.ACTIVE_ONLY,
    staff=Rule.ACTIVE_ONLY,
    admin=Rule.ACTIVE_ONLY,
)
_OWN_ORDERS = Entry(customer=Rule.OWN_ORDERS, staff=Rule.ALL, admin=Rule.ALL)
_SELF = Entry(customer=Rule.SELF, staff=Rule.ALL, admin=Rule.ALL)
_NODES = Entry(
    anonymous=Rule.AS_ITS_TYPE,
    customer=Rule.AS_ITS_TYPE,
    staff=Rule.AS_ITS_TYPE,
    admin=Rule.AS_ITS_TYPE,
)

# (root type, field as the schema names it) -> who may call it, reaching which rows.
POLICY: dict[tuple[str, str], Entry] = {
    ("Query", "product"): _CATALOG,
    ("Query", "products"): _CATALOG,
    ("Query", "productSuggestions"): _SUGGESTIONS,
    ("Query", "order"): _OWN_ORDERS,
    ("Query", "orders"): _OWN_ORDERS,
    ("Query", "customer"): _SELF,
    ("Query", "customers"): _SELF,
    ("Query", "readModel"): _STAFF,
    ("Query", "node"): _NODES,
    ("Query", "nodes"): _NODES,
    # The catalog and the stock: staff's.
    ("Mutation", "createProduct"): _STAFF,
    ("Mutation", "updateProduct"): _STAFF,
    ("Mutation", "changePrice"): _STAFF,
    ("Mutation", "discontinueProduct"): _STAFF,
    ("Mutation", "receiveStock"): _STAFF,
    ("Mutation", "adjustStock"): _STAFF,
    # A customer signing in for the first time registers itself (needs a token).
    ("Mutation", "registerCustomer"): _SELF,
    # Erasure is the customer's right and the admin's duty; staff may not.
    ("Mutation", "eraseCustomer"): Entry(customer=Rule.SELF, admin=Rule.ALL),
    ("Mutation", "placeOrder"): _SELF,
    ("Mutation", "payOrder"): _STAFF,
    ("Mutation", "shipOrder"): _STAFF,
    ("Mutation", "cancelOrder"): Entry(customer=Rule.OWN_UNPAID, staff=Rule.ALL, admin=Rule.ALL),
    # The whole feed names every order and customer: staff's. `types:` does not
    # widen it to others, who follow one product or their own orders instead.
    ("Subscription", "changes"): _STAFF,
    ("Subscription", "productChanged"): _CATALOG,
    ("Subscription", "orderChanged"): _OWN_ORDERS,
    ("Subscription", "ordersOfCustomer"): _OWN_ORDERS,
}


class Refused(GraphQLError):
    """A caller the table does not let through: UNAUTHENTICATED when anonymous
    (a token might let it), FORBIDDEN when signed in (no token of its role would)."""

    def __init__(
        self, identity: Identity, root: str, field: str, *, message: str | None = None
    ) -> None:
        if identity.is_anonymous:
            said, code = f"sign in to use {field}", "UNAUTHENTICATED"
        else:
            said, code = f"the role {identity.role.value} may not use {field}", "FORBIDDEN"
        super().__init__(message or said, extensions={"code": code, "field": field})


def allowed(identity: Identity, root: str, field: str) -> Rule | None:
    """The rule the caller gets for a root field, or None when it is refused
    (also for a field the table does not know: deny by default)."""
    entry = POLICY.get((root, field))
    return None if entry is None else entry.rule_for(identity.role)


def check(identity: Identity, root: str, field: str) -> Rule:
    """The caller's rule for a root field, or `Refused`."""
    found = allowed(identity, root, field)
    if found is None:
        raise Refused(identity, root, field)
    return found


def _identity(context: Any) -> Identity:
    identity = getattr(context, "identity", None)
    return identity if isinstance(identity, Identity) else ANONYMOUS


def rule(info: Any) -> Rule:
    """The row rule of the root field a resolver answers, for the caller.

    The extension has already refused callers without one; asking again keeps
    a resolver safe when it is run without the extension (a schema built
    without it), and costs a dictionary lookup."""
    return check(_identity(info.context), info.path.typename or "", info.field_name)


def scope(info: Any) -> Scope:
    """What the read side's query builders restrict rows to, for the caller of
    the root field a resolver answers."""
    return _scope(_identity(info.context), rule(info))


def scope_of(context: Any, root: str, field: str) -> Scope | None:
    """The rows the caller reaches through a root field, or None when it may not
    call it: what a nested object (a notification's order) obeys, as the field
    that reads the same object (`Query.order`) would."""
    identity = _identity(context)
    found = allowed(identity, root, field)
    return None if found is None else _scope(identity, found)


def _scope(identity: Identity, found: Rule) -> Scope:
    if found is Rule.ALL:
        return Scope()
    if found is Rule.ACTIVE_ONLY:
        return Scope(active_only=True)
    if found is Rule.AS_ITS_TYPE:
        # No rows of its own: api/node.py asks for each type's field's scope.
        # Should anything ask here, the narrowest scope there is answers.
        return Scope(active_only=True, customer_id="")
    # SELF and own orders: a customer without a customer id owns nothing; the
    # empty string is no id, and the builders answer it with nothing.
    return Scope(customer_id=identity.customer_id or "")


_ROOTS = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}


def root_fields(document: DocumentNode, operation_name: str | None) -> tuple[str, list[str]]:
    """The root type an operation runs on and the root fields it selects, through
    fragments and inline fragments; introspection's own fields are left out
    (they are not in the table: the schema's shape is public, or off in
    production)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return "", []
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    names: list[str] = []
    seen: set[str] = set()

    def walk(selections: SelectionSetNode) -> None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if not name.startswith("__") and name not in names:
                    names.append(name)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                spread = selection.name.value
                if spread not in seen and spread in fragments:
                    seen.add(spread)
                    walk(fragments[spread])

    walk(operation.selection_set)
    return _ROOTS[operation.operation.value], names


class Policy(SchemaExtension):
    """Refuses an operation, before anything of it executes, when the caller may
    not use one of its root fields. A field's row rule is applied by its resolver
    (`scope`), this only decides whether the caller gets in at all."""

    def on_execute(self) -> Iterator[None]:
        self._check()
        yield

    def _check(self) -> None:
        execution = self.execution_context
        document = execution.graphql_document
        if document is None or execution.result is not None:
            return  # refused already (the budget), or nothing to run
        root, fields = root_fields(document, execution.operation_name)
        identity = _identity(execution.context)
        for field in fields:
            if allowed(identity, root, field) is None:
                self._refuse(Refused(identity, root, field))
                return

    def _refuse(self, error: Refused) -> None:
        execution = self.execution_context
        if execution.operation_type is OperationType.SUBSCRIPTION:
            # Strawberry answers an error raised here as the subscription's one result.
            raise error
        # A result set before execution is answered instead of executing.
        execution.result = GraphQLExecutionResult(data=None, errors=[error])


def sees_contact_details(context: Any, customer_id: str) -> bool:
    """Whether the caller may read a customer's contact details (email; the
    domain has no address): that customer and staff (admins too) may, anyone
    else reads null. One rule for every type that shows them."""
    identity = _identity(context)
    if identity.is_staff:
        return True
    return identity.role is Role.CUSTOMER and identity.customer_id == str(customer_id)


def markdown_table() -> str:
    """The table as docs/policy.md shows it (a unit test holds the two together)."""
    roles = list(Role)
    lines = [
        "| operation | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for (root, field), entry in POLICY.items():
        cells = [(found.value if (found := entry.rule_for(r)) else "no") for r in roles]
        lines.append(f"| {root}.{field} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
