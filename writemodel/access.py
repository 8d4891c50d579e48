"""Who may change what: the command layer's one decision table.

Every command runs on behalf of an `Actor`. The API makes one from the
request's verified identity (api/mutations/_command.py); the demo loader, the
benchmarks and tests use `SYSTEM`. Two kinds of decision live here, and only
here:

- `may_send`: which roles may send a command at all (`MAY_SEND`). The API's
  policy table refuses the same calls earlier; this is the second line, so a
  caller that reaches the command service another way is refused as well. A
  command with no entry is refused: deny by default.
- Row rules (`CustomerMustBeTheActors`, `OrderMustBeTheActors`, ...): whether
  the actor may touch *this* aggregate. Handlers call them inside the unit of
  work that loads the aggregate, so the decision and the write see one state.

A customer is refused with FORBIDDEN both for another customer's aggregate
and for one that does not exist: the command side, like the read side, never
tells a customer whether someone else's id exists.

`SYSTEM` is the only actor with the role "system". The API builds actors from
`api.identity.Role`, which has no such member, so no request can become it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from domain import commands as c
from domain.errors import Forbidden
from domain.order import Order, OrderStatus

__all__ = [
    "ANONYMOUS",
    "MAY_SEND",
    "SYSTEM",
    "Actor",
    "CustomerMayCancelOnlyUnpaid",
    "CustomerMayEraseOnlySelf",
    "CustomerMustBeTheActors",
    "CustomerRegistersThemself",
    "OrderMustBeTheActors",
    "may_send",
]

ADMIN, CUSTOMER, STAFF, SYSTEM_ROLE = "admin", "customer", "staff", "system"


@dataclass(frozen=True)
class Actor:
    """Who sends a command: a role, and for a token's holder who they are."""

    role: str
    # The token's `sub` (and `iss`): who to name in the audit, whose keys are whose.
    subject: str | None = None
    issuer: str | None = None
    # The customer this actor is (customers only).
    customer_id: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.role == CUSTOMER

    @property
    def idempotency_scope(self) -> str:
        """The namespace of this actor's idempotency keys: one client's key can never
        replay another's answer. A token holder's scope is a digest of issuer and
        subject (64 hex digits), so it can never equal the words used for `SYSTEM`
        or an actor without a subject."""
        if self.role == SYSTEM_ROLE:
            return "system"
        if self.subject is None:
            return "anonymous"
        named = f"{self.issuer or ''}\x00{self.subject}".encode()
        return hashlib.sha256(named).hexdigest()


# The demo loader, the benchmarks, the tests and operators' tools: every right.
SYSTEM = Actor(SYSTEM_ROLE, subject="system")
ANONYMOUS = Actor("anonymous")

_STAFF = frozenset({STAFF, ADMIN, SYSTEM_ROLE})

# Which roles may send each command (docs/write-side.md, "Who may change what").
MAY_SEND: dict[type[c.Command], frozenset[str]] = {
    c.CreateProduct: _STAFF,
    c.UpdateProduct: _STAFF,
    c.ChangePrice: _STAFF,
    c.DiscontinueProduct: _STAFF,
    c.ReceiveStock: _STAFF,
    c.AdjustStock: _STAFF,
    c.RegisterCustomer: _STAFF | {CUSTOMER},
    c.PlaceOrder: _STAFF | {CUSTOMER},
    c.CancelOrder: _STAFF | {CUSTOMER},
    c.PayOrder: _STAFF,
    c.ShipOrder: _STAFF,
    # Staff may not erase a customer: erasure is the customer's, or an admin's.
    c.EraseCustomer: frozenset({CUSTOMER, ADMIN, SYSTEM_ROLE}),
}


def may_send(actor: Actor, command: c.Command) -> None:
    """Refuse a command the actor's role may not send (anonymous and unknown roles
    included: they appear in no entry)."""
    if actor.role not in MAY_SEND.get(type(command), frozenset()):
        who = "an anonymous caller" if actor.subject is None else f"the role {actor.role!r}"
        raise Forbidden(f"{who} may not {_verb(command)}")


def _verb(command: c.Command) -> str:
    name = type(command).__name__
    return name[0].lower() + name[1:]


class CustomerMustBeTheActors:
    """A customer acts for themself only (placeOrder's customerId); staff for anyone."""

    @staticmethod
    def check(actor: Actor, customer_id: str, field: str = "customerId") -> None:
        if actor.is_customer and customer_id != actor.customer_id:
            raise Forbidden("a customer may act for themself only", field=field)


class CustomerMayEraseOnlySelf:
    """eraseCustomer: a customer erases themself; who else may is in MAY_SEND."""

    @staticmethod
    def check(actor: Actor, customer_id: str) -> None:
        if actor.is_customer and customer_id != actor.customer_id:
            raise Forbidden("a customer may erase themself only", field="customerId")


class OrderMustBeTheActors:
    """A customer touches their own orders only. Called with the loaded order, or
    None when there is none: a customer hears FORBIDDEN for both, so order ids
    cannot be probed; staff hear NOT_FOUND from the handler."""

    @staticmethod
    def check(actor: Actor, order: Order | None) -> None:
        if actor.is_customer and (order is None or order.customer_id != actor.customer_id):
            raise Forbidden("no order of yours has this id", field="orderId")


class CustomerMayCancelOnlyUnpaid:
    """A paid order is cancelled by staff (it needs a refund); a customer cancels
    an order that is not paid yet. A cancelled one is left to the domain's rule."""

    @staticmethod
    def check(actor: Actor, order: Order) -> None:
        if actor.is_customer and order.status in (OrderStatus.PAID, OrderStatus.SHIPPED):
            raise Forbidden(
                f"an order that is {order.status.value} is cancelled by staff only",
                field="orderId",
            )


class CustomerRegistersThemself:
    """registerCustomer by a customer creates the customer the token names, under
    the id the token carries (api/identity.py): that binds the two with no table.
    Staff register anyone, under a new id."""

    @staticmethod
    def new_customer_id(actor: Actor, new_id: Callable[[], str]) -> str:
        if not actor.is_customer:
            return new_id()
        if actor.customer_id is None:
            raise Forbidden("this token names no customer to register")
        return actor.customer_id
