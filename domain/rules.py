"""The named invariants.

Each rule is an error class with a `check` that raises it, so a handler can
catch one rule by name and a client gets the rule's code. (python-ddd's
`rules.py`, with the rule and its error one and the same.)
"""

from __future__ import annotations

import re

from domain.errors import InvalidInput, RuleBroken

__all__ = [
    "MAX_ORDER_LINES",
    "MAX_TAGS",
    "MAX_TEXT",
    "CurrencyMustBeIsoCode",
    "EmailMustBeWellFormed",
    "OrderLinesMustShareCurrency",
    "OrderMustHaveLines",
    "PriceMustBePositive",
    "QuantityMustBePositive",
    "ReservedCannotExceedOnHand",
    "ReservedCannotGoNegative",
    "SkuMustBeWellFormed",
    "StockCannotGoNegative",
    "TagsMustBeFew",
    "TextMustFit",
]

MAX_ORDER_LINES = 100
MAX_TAGS = 20
MAX_QUANTITY = 1_000_000
MAX_PRICE = 10**12
MAX_TEXT = {"name": 200, "description": 5000, "category": 100, "tag": 50}

_SKU = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,63}$")
# Deliberately modest: one @, no spaces, a dot in the domain. Deliverability is not ours to judge.
_EMAIL_CHAR = r"[^@\s<>()\[\],;:\"\\\x00-\x1f\x7f]"
_EMAIL = re.compile(
    rf"^(?!\.){_EMAIL_CHAR}{{1,64}}(?<!\.)@[^@\s.<>\x00-\x1f\x7f]+(\.[^@\s.<>\x00-\x1f\x7f]+)+$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SkuMustBeWellFormed(InvalidInput):
    code = "SKU_MALFORMED"

    @classmethod
    def check(cls, sku: str, field: str = "sku") -> str:
        sku = sku.strip().upper()
        if not _SKU.match(sku):
            raise cls(
                "a sku is 1-64 characters of A-Z, 0-9, '.', '_' or '-', "
                "starting with a letter or digit",
                field=field,
            )
        return sku


class EmailMustBeWellFormed(InvalidInput):
    code = "EMAIL_MALFORMED"

    @classmethod
    def check(cls, email: str, field: str = "email") -> str:
        email = email.strip().lower()
        if len(email) > 254 or not _EMAIL.match(email):
            raise cls(f"{email[:60]!r} is not an email address", field=field)
        return email


class CurrencyMustBeIsoCode(InvalidInput):
    code = "CURRENCY_MALFORMED"

    @classmethod
    def check(cls, currency: str, field: str = "currency") -> str:
        currency = currency.strip().upper()
        if not _CURRENCY.match(currency):
            raise cls("a currency is a three-letter ISO 4217 code", field=field)
        return currency


class PriceMustBePositive(InvalidInput):
    code = "PRICE_NOT_POSITIVE"

    @classmethod
    def check(cls, amount: int, field: str = "price") -> int:
        if not 0 < amount <= MAX_PRICE:
            raise cls(f"a price is between 1 and {MAX_PRICE} minor units", field=field)
        return amount


class QuantityMustBePositive(InvalidInput):
    code = "QUANTITY_NOT_POSITIVE"

    @classmethod
    def check(cls, quantity: int, field: str = "quantity") -> int:
        if not 0 < quantity <= MAX_QUANTITY:
            raise cls(f"a quantity is a whole number from 1 to {MAX_QUANTITY}", field=field)
        return quantity


class TextMustFit(InvalidInput):
    code = "TEXT_OUT_OF_BOUNDS"

    @classmethod
    def check(cls, value: str, kind: str, field: str, *, required: bool = True) -> str:
        value = value.strip()
        if required and not value:
            raise cls(f"{field} must not be empty", field=field)
        limit = MAX_TEXT[kind]
        if len(value) > limit:
            raise cls(f"{field} is at most {limit} characters", field=field)
        return value


class TagsMustBeFew(InvalidInput):
    code = "TOO_MANY_TAGS"

    @classmethod
    def check(cls, tags: list[str], field: str = "tags") -> list[str]:
        cleaned = sorted({TextMustFit.check(t, "tag", field).lower() for t in tags})
        if len(cleaned) > MAX_TAGS:
            raise cls(f"a product has at most {MAX_TAGS} tags", field=field)
        return cleaned


class ReservedCannotGoNegative(RuleBroken):
    code = "RESERVED_CANNOT_GO_NEGATIVE"

    @classmethod
    def check(cls, reserved: int, field: str = "quantity") -> None:
        if reserved < 0:
            raise cls("cannot release or ship more units than are reserved", field=field)


class StockCannotGoNegative(RuleBroken):
    code = "STOCK_CANNOT_GO_NEGATIVE"

    @classmethod
    def check(cls, on_hand: int, field: str = "quantity") -> None:
        if on_hand < 0:
            raise cls("stock on hand cannot go below zero", field=field)


class ReservedCannotExceedOnHand(RuleBroken):
    code = "RESERVED_CANNOT_EXCEED_ON_HAND"

    @classmethod
    def check(cls, reserved: int, on_hand: int, field: str = "quantity") -> None:
        if reserved > on_hand:
            raise cls(f"{reserved} reserved would exceed the {on_hand} on hand", field=field)


class OrderMustHaveLines(InvalidInput):
    code = "ORDER_LINES_OUT_OF_BOUNDS"

    @classmethod
    def check(cls, count: int, field: str = "lines") -> None:
        if not 0 < count <= MAX_ORDER_LINES:
            raise cls(f"an order has from 1 to {MAX_ORDER_LINES} lines", field=field)


class OrderLinesMustShareCurrency(RuleBroken):
    code = "MIXED_CURRENCIES"

    @classmethod
    def check(cls, currencies: set[str], field: str = "lines") -> None:
        if len(currencies) != 1:
            raise cls("all products of an order must be priced in one currency", field=field)
