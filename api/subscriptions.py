"""Subscriptions: change notifications, sent once the read side has the change.

Each notification's `position` is a consistency token (a query given it sees
the change) and a resume point (`after:` on any subscription replays what
came after it from the write side's outbox, then continues live, with no gap
and no duplicate at the seam).

Each subscriber gets only what the policy table (api/policy.py) lets its
caller read, decided change by change at delivery: a customer's order changes
only for their own orders, a product's only while the read model shows it
active to a caller who may see active products only. The objects nested in a
notification obey the row rule of the query that reads them (`product` as
`Query.product`, and so on), so no notification is a way around it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from enum import Enum
from typing import Annotated

import strawberry

from api import resolvers
from api.context import Context
from api.extensions import UserError
from api.fanout import Admission, Shared
from api.instruments import SUBSCRIBERS
from api.policy import Refused, rule, scope, scope_of
from api.types import Customer, Order, Product, describe_values
from readmodel.notifications import Change, SubscriberFellBehind
from readmodel.queries import InvalidQuery, position, stored_id

__all__ = ["Subscription"]

Info = strawberry.Info[Context, None]


@strawberry.enum(description="The kind of object a change belongs to.")
class EntityType(Enum):
    PRODUCT = "Product"
    ORDER = "Order"
    CUSTOMER = "Customer"


# Not strawberry.enum_value: mypy would then take each value for the definition
# rather than the string the notifications compare with.
describe_values(
    EntityType,
    {
        "PRODUCT": "A product, its stock included.",
        "ORDER": "An order.",
        "CUSTOMER": "A customer.",
    },
)


@strawberry.type(description="Something changed, and the read side already shows it.")
class ChangeNotification:
    entity_type: EntityType = strawberry.field(
        description="What changed: which of product, order and customer is set."
    )
    id: strawberry.ID = strawberry.field(description="The id of the object that changed.")
    version: int = strawberry.field(
        description="The version of the aggregate the change belongs to: the product's, "
        "or for stock changes (kind Stock...) the stock's."
    )
    position: str = strawberry.field(
        description="A consistency token for queries, and the point to resume from."
    )
    kind: str = strawberry.field(description="What happened, e.g. PriceChanged, OrderPaid.")

    @resolvers.field(description="The product as the read side has it now (PRODUCT only).")
    async def product(self, info: Info) -> Product | None:
        if self.entity_type is not EntityType.PRODUCT:
            return None
        doc = await _read(info, "products", "product", str(self.id))
        return None if doc is None else Product.from_document(doc)

    @resolvers.field(description="The order as the read side has it now (ORDER only).")
    async def order(self, info: Info) -> Order | None:
        if self.entity_type is not EntityType.ORDER:
            return None
        doc = await _read(info, "orders", "order", str(self.id))
        return None if doc is None else Order.from_document(doc)

    @resolvers.field(description="The customer as the read side has it now (CUSTOMER only).")
    async def customer(self, info: Info) -> Customer | None:
        if self.entity_type is not EntityType.CUSTOMER:
            return None
        doc = await _read(info, "customers", "customer", str(self.id))
        return None if doc is None else Customer.from_document(doc)

    @classmethod
    def of(cls, change: Change) -> ChangeNotification:
        return cls(
            entity_type=EntityType(change.entity_type),
            id=strawberry.ID(change.id),
            version=change.version,
            position=str(change.position),
            kind=change.kind,
        )


async def _read(info: Info, index: str, field: str, key: str) -> dict[str, object] | None:
    """A notification's object, within the rows the query reading it would
    reach for this caller; null where that query would refuse the caller."""
    rows = scope_of(info.context, "Query", field)
    if rows is None:
        return None
    return await info.context.app.reader.get(index, key, rows)


_AFTER_HELP = (
    "A position from an earlier notification (or a mutation's consistencyToken): first "
    "replay every change after it, then continue live."
)


After = Annotated[str | None, strawberry.argument(description=_AFTER_HELP)]


def _position(after: str | None) -> int | None:
    if after is None:
        return None
    try:
        return position(after, "after")
    except InvalidQuery as error:
        raise UserError(str(error), argument=error.argument) from None


def _id(value: str, argument: str) -> str:
    """A lookup answers null for an id no object can have; a subscription has no
    empty answer to give, and would wait forever, so it is refused instead."""
    key = stored_id(value)
    if key is None:
        raise UserError(
            f"{argument} is not an id: ids are 1-36 characters of A-Z, a-z, 0-9, '-' or '_'",
            argument=argument,
        )
    return key


# Whether a change may be delivered to this subscriber, asked at delivery.
Visible = Callable[[Change], Awaitable[bool]]


async def _notifications(
    info: Info,
    accept: Callable[[Change], bool],
    after: str | None,
    ids: dict[str, str] | None = None,
    visible: Visible | None = None,
    refused: Refused | None = None,
) -> AsyncGenerator[ChangeNotification, None]:
    # Checked inside the generator, as `after` is: the refusal then reaches the
    # client as the subscription's error, on either WebSocket protocol.
    if refused is not None:
        raise refused
    for argument, value in (ids or {}).items():
        _id(value, argument)
    start = _position(after)
    context = info.context
    if isinstance(context, Admission) and start is None:
        # Admitted, and nothing of its own to replay: a group serves it (api/fanout.py).
        context.shareable = True
        return
    group = context if isinstance(context, Shared) else None
    shared = group is not None
    if group is not None:
        start = group.start  # the group's members count as subscribers, not the group
    hub = context.app.hub
    try:
        with contextlib.nullcontext() if shared else SUBSCRIBERS.track_inprogress():
            async for change in hub.subscribe(accept, start):
                if visible is None or await visible(change):
                    if group is not None:
                        group.position = change.position
                    yield ChangeNotification.of(change)
    except SubscriberFellBehind as behind:
        raise UserError(str(behind), code="SUBSCRIBER_FELL_BEHIND", argument="after") from None


def _one(entity_type: str, key: str) -> Callable[[Change], bool]:
    return lambda change: change.entity_type == entity_type and change.id == key


def _owned(info: Info) -> Callable[[Change], bool]:
    """Order changes the caller may follow: a customer's own (the hub knows each
    order's customer), everyone's for staff."""
    rows = scope(info)
    if rows.customer_id is None:
        return lambda change: True
    owner = rows.customer_id
    return lambda change: bool(owner) and change.customer_id == owner


def _while_visible(info: Info) -> Visible | None:
    """For a caller who sees active products only: a product's change is
    delivered while the read model shows the product active (it has the change
    by then), so a draft's or a discontinued product's changes stay unseen."""
    rows = scope(info)
    if not rows.active_only:
        return None
    reader = info.context.app.reader

    async def visible(change: Change) -> bool:
        return await reader.get("products", change.id, rows) is not None

    return visible


@strawberry.type(
    description="Change notifications over a WebSocket (graphql-transport-ws), each sent "
    "once the read side shows the change. Each caller gets only the changes of what "
    "they may read (docs/policy.md)."
)
class Subscription:
    # Plain functions handing back the notifications' async generator: strawberry
    # iterates whatever a subscription resolver returns. Each asks the policy for
    # its caller's rule first (the Policy extension refused callers without one).
    @resolvers.subscription(description="Every change of the chosen kinds, in position order.")
    def changes(
        self,
        info: Info,
        types: Annotated[
            list[EntityType] | None,
            strawberry.argument(description="Only changes of these kinds; null: every kind."),
        ] = None,
        after: After = None,
    ) -> AsyncGenerator[ChangeNotification, None]:
        rule(info)  # staff's only: the whole feed names every customer's orders
        wanted = {t.value for t in types or EntityType}
        return _notifications(info, lambda change: change.entity_type in wanted, after)

    @resolvers.subscription(description="Changes to one product (its stock included).")
    def product_changed(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The product's id.")],
        after: After = None,
    ) -> AsyncGenerator[ChangeNotification, None]:
        return _notifications(
            info, _one("Product", str(id)), after, {"id": str(id)}, _while_visible(info)
        )

    @resolvers.subscription(description="Changes to one order.")
    def order_changed(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The order's id.")],
        after: After = None,
    ) -> AsyncGenerator[ChangeNotification, None]:
        one, owned = _one("Order", str(id)), _owned(info)
        return _notifications(
            info, lambda change: one(change) and owned(change), after, {"id": str(id)}
        )

    @resolvers.subscription(description="Changes to any order of one customer.")
    def orders_of_customer(
        self,
        info: Info,
        customer_id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="The customer's id; a customer may give only their own."
            ),
        ],
        after: After = None,
    ) -> AsyncGenerator[ChangeNotification, None]:
        key = str(customer_id)
        owned = _owned(info)
        return _notifications(
            info,
            lambda change: (
                change.entity_type == "Order" and change.customer_id == key and owned(change)
            ),
            after,
            {"customerId": key},
            refused=_someone_elses(info, key),
        )


def _someone_elses(info: Info, customer_id: str) -> Refused | None:
    """A customer asking to follow another customer's orders is refused up front
    (FORBIDDEN), whether that customer exists or not: nothing is probed."""
    own = scope(info).customer_id
    if own is not None and own != customer_id:
        return Refused(
            info.context.identity,
            "Subscription",
            "ordersOfCustomer",
            message="a customer may follow only their own orders",
        )
    return None
