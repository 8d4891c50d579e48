"""One handler per command: load, ask the domain, hand back a snapshot.

Handlers never commit; the command service does, once, with the events.
Every string of a command meets a rule of domain/rules.py before it is used:
ids here, before they are looked up (`IdMustBeWellFormed`), everything else
in the domain method that takes it. Each rule names the input field as the
client wrote it (`productId`, `lines.1.sku`).

Who may send a command at all is checked by the service before it runs; the
actor's right to the aggregate (own order, own customer) is checked here, in the
unit of work that loads it, by the rules of writemodel/access.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import commands as c
from domain.customer import Customer
from domain.errors import AlreadyExists, InvalidInput, NotFound, RuleBroken
from domain.order import Order, OrderLine
from domain.product import Product, ProductStatus
from domain.rules import (
    IdMustBeWellFormed,
    InitialStockCannotBeNegative,
    OrderLinesMustHaveDistinctSkus,
    OrderMustHaveLines,
    SkuMustBeWellFormed,
    TextMustBeClean,
)
from domain.stock import Stock
from writemodel.access import (
    Actor,
    CustomerMayCancelOnlyUnpaid,
    CustomerMayEraseOnlySelf,
    CustomerMustBeTheActors,
    CustomerRegistersThemself,
    OrderMustBeTheActors,
)
from writemodel.snapshots import customer_snapshot, order_snapshot, product_snapshot
from writemodel.unit_of_work import UnitOfWork

__all__ = ["HANDLERS", "Changed", "Context"]


@dataclass(frozen=True)
class Context:
    now: datetime
    new_id: Callable[[], str]
    # On whose behalf the command runs; the row rules of writemodel/access.py read it.
    actor: Actor


@dataclass(frozen=True)
class Changed:
    """What a command changed: the entity's kind and its state after the command."""

    kind: str
    snapshot: dict[str, Any]


def _status(value: ProductStatus | str, field: str = "status") -> ProductStatus:
    if isinstance(value, ProductStatus):
        return value
    try:
        return ProductStatus(TextMustBeClean.check(value, field).lower())
    except ValueError:
        raise InvalidInput(
            f"unknown product status {value[:40]!r}", field=field, code="STATUS_UNKNOWN"
        ) from None


async def _product(uow: UnitOfWork, product_id: str) -> Product:
    product_id = IdMustBeWellFormed.check(product_id, "productId")
    product = await uow.products.get(product_id)
    if product is None:
        raise NotFound(f"no product with id {product_id!r}", field="productId")
    return product


async def _stock(uow: UnitOfWork, product_id: str, field: str | None = "productId") -> Stock:
    # `field` is the input that named the product, if one did: shipping and
    # cancelling reach each line's stock through the order, not through an input.
    item = await uow.stocks.get(product_id)
    if item is None:
        raise NotFound(f"no stock for product {product_id!r}", field=field)
    return item


async def _order(uow: UnitOfWork, order_id: str, ctx: Context) -> Order:
    order_id = IdMustBeWellFormed.check(order_id, "orderId")
    order = await uow.orders.get(order_id)
    OrderMustBeTheActors.check(ctx.actor, order)
    if order is None:
        raise NotFound(f"no order with id {order_id!r}", field="orderId")
    return order


async def _customer(uow: UnitOfWork, customer_id: str) -> Customer:
    customer_id = IdMustBeWellFormed.check(customer_id, "customerId")
    customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id!r}", field="customerId")
    return customer


async def _product_changed(uow: UnitOfWork, product: Product) -> Changed:
    return Changed("Product", product_snapshot(product, await uow.stocks.get(product.id)))


async def create_product(cmd: c.CreateProduct, uow: UnitOfWork, ctx: Context) -> Changed:
    sku = SkuMustBeWellFormed.check(cmd.sku)
    # A taken sku is refused at commit, by the unique constraint (SKU_TAKEN): a
    # lookup here would cost a round trip for every product, and could not close
    # the race between two creations anyway.
    InitialStockCannotBeNegative.check(cmd.initial_stock)
    product = Product.create(
        ctx.new_id(),
        sku=sku,
        name=cmd.name,
        description=cmd.description,
        category=cmd.category,
        tags=list(cmd.tags),
        price=cmd.price,
        currency=cmd.currency,
        status=_status(cmd.status),
        now=ctx.now,
    )
    item = Stock(product.id)
    if cmd.initial_stock:
        item.receive(cmd.initial_stock, field="initialStock")
    uow.products.add(product)
    uow.stocks.add(item)
    return Changed("Product", product_snapshot(product, item))


async def update_product(cmd: c.UpdateProduct, uow: UnitOfWork, ctx: Context) -> Changed:
    product = await _product(uow, cmd.product_id)
    product.expect_version(cmd.expected_version)
    product.update(
        name=cmd.name,
        description=cmd.description,
        category=cmd.category,
        tags=None if cmd.tags is None else list(cmd.tags),
        status=None if cmd.status is None else _status(cmd.status),
    )
    return await _product_changed(uow, product)


async def change_price(cmd: c.ChangePrice, uow: UnitOfWork, ctx: Context) -> Changed:
    product = await _product(uow, cmd.product_id)
    product.expect_version(cmd.expected_version)
    product.change_price(cmd.price, cmd.currency)
    return await _product_changed(uow, product)


async def discontinue_product(cmd: c.DiscontinueProduct, uow: UnitOfWork, ctx: Context) -> Changed:
    product = await _product(uow, cmd.product_id)
    product.expect_version(cmd.expected_version)
    product.discontinue()
    return await _product_changed(uow, product)


async def receive_stock(cmd: c.ReceiveStock, uow: UnitOfWork, ctx: Context) -> Changed:
    product = await _product(uow, cmd.product_id)
    item = await _stock(uow, product.id)
    item.expect_version(cmd.expected_version)
    item.receive(cmd.quantity)
    return Changed("Product", product_snapshot(product, item))


async def adjust_stock(cmd: c.AdjustStock, uow: UnitOfWork, ctx: Context) -> Changed:
    product = await _product(uow, cmd.product_id)
    item = await _stock(uow, product.id)
    item.expect_version(cmd.expected_version)
    item.adjust(cmd.on_hand, cmd.reason)
    return Changed("Product", product_snapshot(product, item))


async def register_customer(cmd: c.RegisterCustomer, uow: UnitOfWork, ctx: Context) -> Changed:
    customer_id = CustomerRegistersThemself.new_customer_id(ctx.actor, ctx.new_id)
    if ctx.actor.is_customer:
        customer_id = IdMustBeWellFormed.check(customer_id, "customerId")
        if await uow.customers.get(customer_id) is not None:
            # Registered before (erased, perhaps): an identity registers once.
            raise AlreadyExists("you are registered already", code="ALREADY_REGISTERED")
    customer = Customer.register(customer_id, email=cmd.email, name=cmd.name)
    if customer.email is not None and await uow.customers.email_taken(customer.email):
        raise AlreadyExists(
            f"a customer with email {customer.email} exists", field="email", code="EMAIL_TAKEN"
        )
    uow.customers.add(customer)
    return Changed("Customer", customer_snapshot(customer))


async def erase_customer(cmd: c.EraseCustomer, uow: UnitOfWork, ctx: Context) -> Changed:
    CustomerMayEraseOnlySelf.check(ctx.actor, cmd.customer_id)
    customer = await _customer(uow, cmd.customer_id)
    customer.expect_version(cmd.expected_version)
    customer.erase()
    return Changed("Customer", customer_snapshot(customer))


async def place_order(cmd: c.PlaceOrder, uow: UnitOfWork, ctx: Context) -> Changed:
    OrderMustHaveLines.check(len(cmd.lines))
    CustomerMustBeTheActors.check(ctx.actor, cmd.customer_id)
    customer = await _customer(uow, cmd.customer_id)
    customer.can_order()
    order_id = ctx.new_id()
    lines: list[OrderLine] = []
    currencies: set[str] = set()
    seen_skus: set[str] = set()
    for i, request in enumerate(cmd.lines):
        field = f"lines.{i}.sku"
        sku = SkuMustBeWellFormed.check(request.sku, field)
        OrderLinesMustHaveDistinctSkus.check(sku, seen_skus, field)
        product = await uow.products.get_by_sku(sku)
        if product is None:
            raise NotFound(f"no product with sku {sku}", field=field)
        if not product.orderable:
            raise RuleBroken(
                f"product {sku} is {product.status.value}, not active",
                field=field,
                code="PRODUCT_NOT_ORDERABLE",
            )
        item = await _stock(uow, product.id, field)
        item.reserve(order_id, request.quantity, field=f"lines.{i}.quantity")
        currencies.add(product.currency)
        lines.append(OrderLine(product.id, sku, request.quantity, product.price))
    order = Order.place(
        order_id, customer_id=customer.id, lines=lines, currencies=currencies, now=ctx.now
    )
    uow.orders.add(order)
    return Changed("Order", order_snapshot(order))


async def pay_order(cmd: c.PayOrder, uow: UnitOfWork, ctx: Context) -> Changed:
    order = await _order(uow, cmd.order_id, ctx)
    order.expect_version(cmd.expected_version)
    order.pay(ctx.now)
    return Changed("Order", order_snapshot(order))


async def ship_order(cmd: c.ShipOrder, uow: UnitOfWork, ctx: Context) -> Changed:
    order = await _order(uow, cmd.order_id, ctx)
    order.expect_version(cmd.expected_version)
    order.ship(ctx.now)
    for line in order.lines:
        (await _stock(uow, line.product_id, None)).commit(order.id, line.quantity)
    return Changed("Order", order_snapshot(order))


async def cancel_order(cmd: c.CancelOrder, uow: UnitOfWork, ctx: Context) -> Changed:
    order = await _order(uow, cmd.order_id, ctx)
    CustomerMayCancelOnlyUnpaid.check(ctx.actor, order)
    order.expect_version(cmd.expected_version)
    order.cancel(ctx.now, cmd.reason)
    for line in order.lines:
        (await _stock(uow, line.product_id, None)).release(order.id, line.quantity)
    return Changed("Order", order_snapshot(order))


Handler = Callable[[Any, UnitOfWork, Context], Awaitable[Changed]]

HANDLERS: dict[type[c.Command], Handler] = {
    c.CreateProduct: create_product,
    c.UpdateProduct: update_product,
    c.ChangePrice: change_price,
    c.DiscontinueProduct: discontinue_product,
    c.ReceiveStock: receive_stock,
    c.AdjustStock: adjust_stock,
    c.RegisterCustomer: register_customer,
    c.EraseCustomer: erase_customer,
    c.PlaceOrder: place_order,
    c.PayOrder: pay_order,
    c.ShipOrder: ship_order,
    c.CancelOrder: cancel_order,
}
