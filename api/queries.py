"""The read side's GraphQL: every field answers from Elasticsearch, never the write database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import strawberry
from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode
from graphql.language import SelectionNode

from api import resolvers
from api.connections import (
    CustomerConnection,
    OrderConnection,
    ProductConnection,
)
from api.context import Context
from api.extensions import UserError
from api.node import MAX_NODE_IDS, Node, find_nodes
from api.policy import scope
from api.types import (
    Customer,
    Long,
    Order,
    OrderStatus,
    Product,
    ProductStatus,
    describe_values,
)
from readmodel.queries import (
    MAX_PAGE,
    MAX_PREFIX,
    MAX_SEARCH,
    InvalidQuery,
    OrderFilter,
    OrderSort,
    ProductFilter,
    ProductSort,
    position,
)

__all__ = ["Query"]

Info = strawberry.Info[Context, None]

# The read side's sort enums are the schema's: strawberry registers the class
# itself, so the arguments are typed with it and reach the builders unchanged.
strawberry.enum(
    ProductSort, name="ProductSort", description="The order of a product search's results."
)
describe_values(
    ProductSort,
    {
        "RELEVANCE": "Best match to `search` first, newest among equals; the default with "
        "`search`. Without `search`, as NEWEST.",
        "PRICE_ASC": "Cheapest first.",
        "PRICE_DESC": "Dearest first.",
        "NAME": "By name, A to Z.",
        "NEWEST": "Most recently created first; the default without `search`.",
        "UNITS_SOLD": "Most units sold first.",
    },
)


@strawberry.input(description="Every given condition must hold.")
class ProductFilterInput:
    categories: list[str] | None = strawberry.field(
        default=None, description="Products in any of these categories (at most 50)."
    )
    tags: list[str] | None = strawberry.field(
        default=None, description="Products with all of them (at most 50)."
    )
    min_price: int | None = strawberry.field(default=None, description="Minor units, inclusive.")
    max_price: int | None = strawberry.field(default=None, description="Minor units, inclusive.")
    in_stock: bool | None = strawberry.field(
        default=None,
        description="true: products with units available; false: those without; null: both.",
    )
    statuses: list[ProductStatus] | None = strawberry.field(
        default=None,
        description="Products in any of these statuses (at most 50). Default: active "
        "products only. Only staff see drafts and discontinued products.",
    )

    def to_filter(self) -> ProductFilter:
        for name in ("categories", "tags", "statuses"):
            values = getattr(self, name)
            if values is not None and len(values) > 50:
                raise UserError(f"{name} takes at most 50 values", argument=f"filter.{name}")
        return ProductFilter(
            categories=tuple(self.categories or ()),
            tags=tuple(self.tags or ()),
            min_price=self.min_price,
            max_price=self.max_price,
            in_stock=self.in_stock,
            statuses=tuple(s.value for s in self.statuses) if self.statuses else ("active",),
        )


strawberry.enum(OrderSort, name="OrderSort", description="The order of a list of orders.")
describe_values(
    OrderSort,
    {
        "NEWEST": "Most recently placed first; the default.",
        "OLDEST": "Placed longest ago first.",
        "TOTAL_DESC": "Largest total first.",
        "TOTAL_ASC": "Smallest total first.",
    },
)


@strawberry.input(description="Every given condition must hold.")
class OrderFilterInput:
    customer_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Orders of this customer only. A customer sees only their own orders anyway.",
    )
    statuses: list[OrderStatus] | None = strawberry.field(
        default=None, description="Orders in any of these statuses (at most 10); default: all."
    )
    placed_after: datetime | None = strawberry.field(default=None, description="Inclusive.")
    placed_before: datetime | None = strawberry.field(default=None, description="Exclusive.")
    min_total: int | None = strawberry.field(default=None, description="Minor units, inclusive.")
    max_total: int | None = strawberry.field(default=None, description="Minor units, inclusive.")

    def to_filter(self) -> OrderFilter:
        if self.statuses is not None and len(self.statuses) > 10:
            raise UserError("statuses takes at most 10 values", argument="filter.statuses")
        return OrderFilter(
            customer_id=None if self.customer_id is None else str(self.customer_id),
            statuses=tuple(s.value for s in self.statuses or ()),
            placed_after=None if self.placed_after is None else self.placed_after.isoformat(),
            placed_before=None if self.placed_before is None else self.placed_before.isoformat(),
            min_total=self.min_total,
            max_total=self.max_total,
        )


@strawberry.type(
    description="A product matching an autocomplete prefix: enough to show and link it."
)
class ProductSuggestion:
    id: strawberry.ID = strawberry.field(description="The product's id (see `product`).")
    sku: str = strawberry.field(description="The product's sku.")
    name: str = strawberry.field(description="The product's name, as the match shows.")


@strawberry.type(description="How far one read model has got behind the write side.")
class ProjectionStatus:
    name: str = strawberry.field(description="The read model: products, orders or customers.")
    position: Long = strawberry.field(description="Applied and searchable up to this position.")
    head: Long = strawberry.field(description="The newest event of the write side.")
    lag_events: Long = strawberry.field(description="Events not yet applied: head - position.")
    lag_seconds: float = strawberry.field(
        description="Age of the oldest event not yet applied, in seconds (0 when caught up)."
    )
    owner: str | None = strawberry.field(
        description="The worker applying events to it now; null when none holds it."
    )


@strawberry.type(description="How far the read side (Elasticsearch) is behind the write side.")
class ReadModelStatus:
    projections: list[ProjectionStatus] = strawberry.field(description="One per read model.")
    indexed_up_to: Long = strawberry.field(
        description="Every read model has applied events up to this consistency token."
    )
    checked_at: datetime = strawberry.field(description="When these figures were taken.")


# Relay's cursor connection arguments, the same on every connection.
First = Annotated[
    int | None,
    strawberry.argument(
        description="Page forward: this many items (1-100) after `after`. "
        "20 when neither first nor last is given; not with last."
    ),
]
After = Annotated[
    str | None, strawberry.argument(description="A cursor this connection gave: items after it.")
]
Last = Annotated[
    int | None,
    strawberry.argument(
        description="Page backward: this many items (1-100) just before `before`, "
        "in the connection's order; not with first."
    ),
]
Before = Annotated[
    str | None,
    strawberry.argument(description="A cursor this connection gave: items before it (with last)."),
]

# How node and nodes build each read model's object.
_BUILD = {
    "products": Product.from_document,
    "orders": Order.from_document,
    "customers": Customer.from_document,
}

_TOKEN_HELP = (
    "A mutation's consistencyToken: wait (a bounded time) until the read model has "
    "applied it. On timeout the answer comes anyway, flagged in extensions.consistency."
)


@contextlib.contextmanager
def _arguments_checked() -> Iterator[None]:
    """A query builder's refusal of an argument, as a client error naming it."""
    try:
        yield
    except InvalidQuery as error:
        raise UserError(str(error), argument=error.argument) from None


ConsistencyToken = Annotated[str | None, strawberry.argument(description=_TOKEN_HELP)]


def _asks_for(info: Info, name: str) -> bool:
    """Whether the field being resolved selects a field `name`, directly or through
    fragments. Read from graphql-core's syntax tree: strawberry's `selected_fields`
    converts the whole selection below (every node's fields, with their arguments
    and directives) to answer the same, a tenth of a millisecond a page
    (docs/performance.md, "Where the time goes")."""
    raw = info._raw_info
    return any(
        _selects(node.selection_set.selections, raw.fragments, name)
        for node in raw.field_nodes
        if node.selection_set is not None
    )


def _selects(
    selections: tuple[SelectionNode, ...] | list[SelectionNode],
    fragments: dict[str, FragmentDefinitionNode],
    name: str,
) -> bool:
    for selection in selections:
        if isinstance(selection, FieldNode):
            if selection.name.value == name:
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _selects(selection.selection_set.selections, fragments, name):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None:
                continue
            if _selects(fragment.selection_set.selections, fragments, name):
                return True
    return False


async def _consistent(info: Info, token: str | None, names: list[str]) -> None:
    if token is None:
        return
    with _arguments_checked():
        wanted = position(token, "consistencyToken")
    app = info.context.app
    stale = await app.reader.wait_for(wanted, names, app.settings.consistency_timeout)
    if stale is not None:
        info.context.stale.append(
            {
                "field": info.field_name,
                "token": str(wanted),
                "reached": str(stale.reached),
                "behind": stale.behind,
            }
        )
    else:
        info.context.quarantined += [
            {
                "field": info.field_name,
                "token": str(wanted),
                "readModel": entry.read_model,
                "id": entry.document_id,
            }
            for entry in await app.quarantine.at(wanted, names)
        ]


# Arguments that name one object.
ProductId = Annotated[
    strawberry.ID | None, strawberry.argument(description="The product's id; or give sku.")
]
Sku = Annotated[
    str | None,
    strawberry.argument(description="The product's sku, in any case; or give id."),
]
OrderId = Annotated[strawberry.ID, strawberry.argument(description="The order's id.")]
CustomerId = Annotated[strawberry.ID, strawberry.argument(description="The customer's id.")]
NodeId = Annotated[
    strawberry.ID, strawberry.argument(description="The id of a product, order or customer.")
]
NodeIds = Annotated[
    list[strawberry.ID],
    strawberry.argument(
        description=f"Ids of products, orders or customers; at most {MAX_NODE_IDS}."
    ),
]


@strawberry.type(
    description="Reads, answered from the read side (Elasticsearch), which follows the "
    "write side within moments: pass a mutation's consistencyToken to wait for its change. "
    "Who may call each field, and which rows it shows: docs/policy.md."
)
class Query:
    @resolvers.field(description="One product by id or sku.")
    async def product(
        self,
        info: Info,
        id: ProductId = None,
        sku: Sku = None,
        consistency_token: ConsistencyToken = None,
    ) -> Product | None:
        if (id is None) == (sku is None):
            raise UserError("give exactly one of id and sku", argument="id")
        await _consistent(info, consistency_token, ["products"])
        reader = info.context.app.reader
        rows = scope(info)
        if id is not None:
            doc = await reader.get("products", str(id), rows)
        else:
            doc = await reader.product_by_sku(sku or "", rows)
        return None if doc is None else Product.from_document(doc)

    @resolvers.field(description="Search and browse products; a Relay-style connection.")
    async def products(
        self,
        info: Info,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="Words to find, all of them, in name, description and tags, "
                f"or a whole sku (up to {MAX_SEARCH} characters); null: every product."
            ),
        ] = None,
        filter: Annotated[
            ProductFilterInput | None,
            strawberry.argument(description="Conditions every product must meet; default: active."),
        ] = None,
        sort: Annotated[
            ProductSort | None,
            strawberry.argument(description="Default: RELEVANCE with search, else NEWEST."),
        ] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        consistency_token: ConsistencyToken = None,
    ) -> ProductConnection:
        await _consistent(info, consistency_token, ["products"])
        wants_facets = _asks_for(info, "facets")
        with _arguments_checked():
            page = await info.context.app.reader.products(
                search=search,
                filter=filter.to_filter() if filter else None,
                sort=sort,
                first=first,
                after=after,
                last=last,
                before=before,
                facets=wants_facets,
                scope=scope(info),
            )
        return ProductConnection.from_product_page(page)

    @resolvers.field(
        description="Autocomplete: active products (what `products` shows by default) "
        "whose name holds every word of `prefix`, the last one as the start of a word, "
        'in any order and in any case, sorted by name: "steel ke" finds "Steel kettle" '
        'and "Kettle of steel", "ke" finds "Camping kettle" too; "ettle" finds nothing.'
    )
    async def product_suggestions(
        self,
        info: Info,
        prefix: Annotated[
            str,
            strawberry.argument(
                description=f"What the user has typed so far, 1 to {MAX_PREFIX} characters."
            ),
        ],
        first: Annotated[
            int, strawberry.argument(description=f"At most this many (1-{MAX_PAGE}).")
        ] = 10,
    ) -> list[ProductSuggestion]:
        with _arguments_checked():
            docs = await info.context.app.reader.suggest_products(prefix, first, scope(info))
        return [
            ProductSuggestion(id=strawberry.ID(d["id"]), sku=d["sku"], name=d["name"]) for d in docs
        ]

    @resolvers.field(description="One order by id.")
    async def order(
        self,
        info: Info,
        id: OrderId,
        consistency_token: ConsistencyToken = None,
    ) -> Order | None:
        await _consistent(info, consistency_token, ["orders"])
        doc = await info.context.app.reader.get("orders", str(id), scope(info))
        return None if doc is None else Order.from_document(doc)

    @resolvers.field(description="Orders, newest first by default; a Relay-style connection.")
    async def orders(
        self,
        info: Info,
        filter: Annotated[
            OrderFilterInput | None,
            strawberry.argument(description="Conditions every order must meet; default: none."),
        ] = None,
        sort: Annotated[
            OrderSort | None,
            strawberry.argument(description="Default: NEWEST."),
        ] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        consistency_token: ConsistencyToken = None,
    ) -> OrderConnection:
        await _consistent(info, consistency_token, ["orders"])
        with _arguments_checked():
            page = await info.context.app.reader.orders(
                filter=filter.to_filter() if filter else None,
                sort=sort,
                first=first,
                after=after,
                last=last,
                before=before,
                scope=scope(info),
            )
        return OrderConnection.from_page(page, Order.from_document)

    @resolvers.field(description="Customers by name, or by relevance when searching.")
    async def customers(
        self,
        info: Info,
        search: Annotated[
            str | None,
            strawberry.argument(
                description=f"Words to find in the name or email (up to {MAX_SEARCH} "
                "characters); null or empty: every customer, by name."
            ),
        ] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        consistency_token: ConsistencyToken = None,
    ) -> CustomerConnection:
        await _consistent(info, consistency_token, ["customers"])
        with _arguments_checked():
            page = await info.context.app.reader.customers(
                search=search,
                first=first,
                after=after,
                last=last,
                before=before,
                scope=scope(info),
            )
        return CustomerConnection.from_page(page, Customer.from_document)

    @resolvers.field(description="One customer by id, with lifetime figures.")
    async def customer(
        self,
        info: Info,
        id: CustomerId,
        consistency_token: ConsistencyToken = None,
    ) -> Customer | None:
        await _consistent(info, consistency_token, ["customers"])
        doc = await info.context.app.reader.get("customers", str(id), scope(info))
        return None if doc is None else Customer.from_document(doc)

    @resolvers.field(
        description="Any product, order or customer by its id (Relay's refetch): null "
        "where the caller's own field (product, order, customer) would not show it."
    )
    async def node(self, info: Info, id: NodeId) -> Node | None:
        found: list[Node | None] = await find_nodes(info, [id], _BUILD)
        return found[0]

    @resolvers.field(
        description=f"Objects by id, in the order given, null where `node` would be; "
        f"at most {MAX_NODE_IDS} ids."
    )
    async def nodes(self, info: Info, ids: NodeIds) -> list[Node | None]:
        found: list[Node | None] = await find_nodes(info, ids, _BUILD)
        return found

    @resolvers.field(description="Where each read model is, against the write side's head.")
    async def read_model(self, info: Info) -> ReadModelStatus:
        scope(info)  # staff's only; the policy extension refused everyone else
        app = info.context.app
        lags = await app.lag()
        return ReadModelStatus(
            projections=[
                ProjectionStatus(
                    name=lag.name,
                    position=Long(lag.position),
                    head=Long(lag.head),
                    lag_events=Long(lag.lag_events),
                    lag_seconds=round(lag.lag_seconds, 3),
                    owner=lag.owner,
                )
                for lag in lags
            ],
            indexed_up_to=Long(min((lag.position for lag in lags), default=0)),
            checked_at=app.now(),
        )
