"""Product: what the shop sells, and whether it can be ordered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.aggregate import Aggregate
from domain.errors import RuleBroken
from domain.events import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from domain.rules import (
    CurrencyMustBeIsoCode,
    PriceMustBePositive,
    SkuMustBeWellFormed,
    TagsMustBeFew,
    TextMustFit,
)

__all__ = [
    "ActiveProductCannotReturnToDraft",
    "DiscontinueWithItsOwnCommand",
    "DiscontinuedProductIsFinal",
    "Product",
    "ProductStatus",
]


class ProductStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    DISCONTINUED = "discontinued"


class DiscontinuedProductIsFinal(RuleBroken):
    code = "PRODUCT_DISCONTINUED"


class ActiveProductCannotReturnToDraft(RuleBroken):
    code = "ACTIVE_CANNOT_RETURN_TO_DRAFT"


class DiscontinueWithItsOwnCommand(RuleBroken):
    code = "DISCONTINUE_WITH_ITS_OWN_COMMAND"


def _description(value: str) -> str:
    # The one multi-line field: tab and line breaks are kept.
    return TextMustFit.check(value, "description", "description", required=False, multiline=True)


def _category(value: str) -> str:
    return TextMustFit.check(value, "category", "category", required=False, lower=True)


@dataclass(eq=False)
class Product(Aggregate):
    sku: str = ""
    name: str = ""
    description: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    price: int = 0
    currency: str = ""
    status: ProductStatus = ProductStatus.DRAFT
    created_at: datetime | None = None

    @classmethod
    def create(
        cls,
        id: str,
        *,
        sku: str,
        name: str,
        price: int,
        currency: str,
        now: datetime,
        description: str = "",
        category: str = "",
        tags: list[str] | None = None,
        status: ProductStatus = ProductStatus.ACTIVE,
    ) -> Product:
        if status is ProductStatus.DISCONTINUED:
            raise DiscontinuedProductIsFinal("a new product is draft or active", field="status")
        product = cls(
            id,
            sku=SkuMustBeWellFormed.check(sku),
            name=TextMustFit.check(name, "name", "name"),
            description=_description(description),
            category=_category(category),
            tags=TagsMustBeFew.check(tags or []),
            price=PriceMustBePositive.check(price),
            currency=CurrencyMustBeIsoCode.check(currency),
            status=status,
            created_at=now,
        )
        product.record(
            ProductCreated(
                id,
                sku=product.sku,
                name=product.name,
                description=product.description,
                category=product.category,
                tags=list(product.tags),
                price=product.price,
                currency=product.currency,
                status=product.status.value,
            )
        )
        return product

    @property
    def orderable(self) -> bool:
        return self.status is ProductStatus.ACTIVE

    def update(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
        status: ProductStatus | None = None,
    ) -> None:
        self._not_discontinued()
        if status is ProductStatus.DISCONTINUED:
            raise DiscontinueWithItsOwnCommand(
                "use discontinueProduct to discontinue", field="status"
            )
        if status is ProductStatus.DRAFT and self.status is ProductStatus.ACTIVE:
            raise ActiveProductCannotReturnToDraft(
                "an active product cannot go back to draft", field="status"
            )
        # Validate everything first, so a refused update changes nothing at all.
        new_name = self.name if name is None else TextMustFit.check(name, "name", "name")
        new_description = self.description if description is None else _description(description)
        new_category = self.category if category is None else _category(category)
        new_tags = self.tags if tags is None else TagsMustBeFew.check(tags)
        new_status = self.status if status is None else status
        after = (new_name, new_description, new_category, new_tags, new_status)
        if after == (self.name, self.description, self.category, self.tags, self.status):
            return  # nothing changed: no event, no new version
        self.name, self.description, self.category, self.tags, self.status = after
        self.record(
            ProductUpdated(
                self.id,
                name=self.name,
                description=self.description,
                category=self.category,
                tags=list(self.tags),
                status=self.status.value,
            )
        )

    def change_price(self, price: int, currency: str | None = None) -> None:
        self._not_discontinued()
        price = PriceMustBePositive.check(price)
        currency = self.currency if currency is None else CurrencyMustBeIsoCode.check(currency)
        if (price, currency) == (self.price, self.currency):
            return
        old, self.price, self.currency = self.price, price, currency
        self.record(PriceChanged(self.id, old_price=old, new_price=price, currency=currency))

    def discontinue(self) -> None:
        if self.status is ProductStatus.DISCONTINUED:
            return  # already where the command wants it
        self.status = ProductStatus.DISCONTINUED
        self.record(ProductDiscontinued(self.id))

    def _not_discontinued(self) -> None:
        if self.status is ProductStatus.DISCONTINUED:
            raise DiscontinuedProductIsFinal(
                f"product {self.sku} is discontinued", field="productId"
            )
