"""The named invariants.

Each rule is an error class with a `check` that raises it, so a handler can
catch one rule by name and a client gets the rule's code. (python-ddd's
`rules.py`, with the rule and its error one and the same.)
"""

from __future__ import annotations

import re
import unicodedata

from domain.errors import InvalidInput, RuleBroken

__all__ = [
    "MAX_INT",
    "MAX_ORDER_LINES",
    "MAX_ORDER_TOTAL",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "MAX_SAFE_INTEGER",
    "MAX_STOCK",
    "MAX_TAGS",
    "MAX_TEXT",
    "MAX_UNITS_SOLD",
    "MAX_VERSION",
    "CurrencyMustBeIsoCode",
    "EmailMustBeWellFormed",
    "IdMustBeWellFormed",
    "InitialStockCannotBeNegative",
    "OrderLinesMustHaveDistinctSkus",
    "OrderLinesMustShareCurrency",
    "OrderMustHaveLines",
    "OrderTotalMustFit",
    "PriceMustBePositive",
    "PriceMustFit",
    "QuantityMustBePositive",
    "QuantityMustFit",
    "ReservedCannotExceedOnHand",
    "ReservedCannotGoNegative",
    "SkuMustBeWellFormed",
    "StockCannotExceedLimit",
    "StockCannotGoNegative",
    "TagsMustBeFew",
    "TextMustBeClean",
    "TextMustFit",
    "UnitsSoldMustFit",
    "VersionMustFit",
]

# What the API can send back bounds what the domain accepts: nothing may be
# committed whose answer cannot be sent. GraphQL's Int is 32-bit signed; the
# API's Long (sums and counters that only grow) is a JSON number JavaScript
# reads exactly, so within 2^53 - 1.
MAX_INT = 2**31 - 1
MAX_SAFE_INTEGER = 2**53 - 1

MAX_ORDER_LINES = 100
MAX_TAGS = 20
MAX_QUANTITY = 1_000_000
# A price is an Int on the way in and out.
MAX_PRICE = MAX_INT
# An order's total, and so each line's amount, is an Int in the answer.
MAX_ORDER_TOTAL = MAX_INT
# On hand bounds reserved and available too; far below MAX_INT, so that no
# stock figure is ever near the edge of its type.
MAX_STOCK = 1_000_000_000
# Grows with every shipment; the write database keeps it in 32 bits.
MAX_UNITS_SOLD = MAX_INT
# An aggregate's version is an Int in the API and 32 bits in the write database.
MAX_VERSION = MAX_INT
MAX_TEXT = {"name": 200, "description": 5000, "category": 100, "tag": 50, "reason": 200}


def _ranges(*spans: tuple[int, int]) -> str:
    return "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in spans)


# What no text may hold: C0 and C1 control characters (Elasticsearch's
# completion field reserves U+0000, U+001E and U+001F; PostgreSQL refuses
# U+0000 outright), DEL, unpaired surrogates (a Python str can hold them,
# UTF-8 cannot) and the Unicode noncharacters (U+FDD0-U+FDEF and the last two
# code points of every plane). Multi-line fields allow tab, LF and CR.
_NONCHARACTERS = [(0xFDD0, 0xFDEF)] + [
    (plane + 0xFFFE, plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000)
]
_ALWAYS = [(0x7F, 0x9F), (0xD800, 0xDFFF), *_NONCHARACTERS]
_FORBIDDEN = {
    False: re.compile(f"[{_ranges((0x00, 0x1F), *_ALWAYS)}]"),
    True: re.compile(f"[{_ranges((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), *_ALWAYS)}]"),
}

# Trimmed from both ends before the check: ordinary and Unicode spaces, tab and
# line breaks (a pasted value's trailing newline), never a control character
# that the check must see (Python counts U+001C-U+001F and U+0085 as spaces).
_TRIM = "".join(
    c for c in map(chr, range(0x3001)) if c.isspace() and not _FORBIDDEN[True].fullmatch(c)
)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,35}")
_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Deliberately modest: one @, no spaces, a dot in the domain. Deliverability is not ours to judge.
_EMAIL_CHAR = r"[^@\s<>()\[\],;:\"\\]"
_EMAIL = re.compile(rf"(?!\.){_EMAIL_CHAR}{{1,64}}(?<!\.)@[^@\s.<>]+(\.[^@\s.<>]+)+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


class TextMustBeClean(InvalidInput):
    """Every string a command takes passes here first, before any other rule:
    what comes out is NFC and holds no character that a store downstream
    (PostgreSQL, Elasticsearch, a JSON encoder) would refuse or mangle."""

    code = "TEXT_INVALID_CHARACTERS"

    @classmethod
    def check(cls, value: str, field: str, *, multiline: bool = False, trim: bool = True) -> str:
        if trim:
            value = value.strip(_TRIM)
        bad = _FORBIDDEN[multiline].search(value)
        if bad is not None:
            raise cls(
                f"{field} holds U+{ord(bad.group()):04X} at character {bad.start()}: control "
                "characters, lone surrogates and noncharacters are not allowed in text"
                + ("" if multiline else " (nor tabs or line breaks in this field)"),
                field=field,
            )
        return _nfc(value)


class IdMustBeWellFormed(InvalidInput):
    """Ids are made by the write side (uuid4 strings); one that could not have
    been made is refused here, before any lookup."""

    code = "ID_MALFORMED"

    @classmethod
    def check(cls, value: str, field: str) -> str:
        value = TextMustBeClean.check(value, field, trim=False)
        if not _ID.fullmatch(value):
            raise cls(
                f"{field} is not an id: ids are 1-36 characters of A-Z, a-z, 0-9, '-' or '_'",
                field=field,
            )
        return value


class SkuMustBeWellFormed(InvalidInput):
    code = "SKU_MALFORMED"

    @classmethod
    def check(cls, sku: str, field: str = "sku") -> str:
        # Matched before upper-casing: "ﬀ".upper() is "FF", and a sku is ASCII as sent.
        sku = TextMustBeClean.check(sku, field)
        if not _SKU.fullmatch(sku):
            raise cls(
                "a sku is 1-64 characters of A-Z, 0-9, '.', '_' or '-', "
                "starting with a letter or digit",
                field=field,
            )
        return sku.upper()


class EmailMustBeWellFormed(InvalidInput):
    code = "EMAIL_MALFORMED"

    @classmethod
    def check(cls, email: str, field: str = "email") -> str:
        email = _nfc(TextMustBeClean.check(email, field).lower())
        if len(email) > 254 or not _EMAIL.fullmatch(email):
            raise cls(f"{email[:60]!r} is not an email address", field=field)
        return email


class CurrencyMustBeIsoCode(InvalidInput):
    code = "CURRENCY_MALFORMED"

    @classmethod
    def check(cls, currency: str, field: str = "currency") -> str:
        currency = TextMustBeClean.check(currency, field)
        if not _CURRENCY.fullmatch(currency):
            raise cls("a currency is a three-letter ISO 4217 code", field=field)
        return currency.upper()


class PriceMustBePositive(InvalidInput):
    """At least one minor unit; `check` also holds the price to `PriceMustFit`."""

    code = "PRICE_NOT_POSITIVE"

    @classmethod
    def check(cls, amount: int, field: str | None = "price") -> int:
        if amount <= 0:
            raise cls(f"a price is between 1 and {MAX_PRICE} minor units", field=field)
        return PriceMustFit.check(amount, field)


class PriceMustFit(InvalidInput):
    """Too large is not "not positive": a client told the wrong bound fixes the wrong thing."""

    code = "PRICE_TOO_LARGE"

    @classmethod
    def check(cls, amount: int, field: str | None = "price") -> int:
        if amount > MAX_PRICE:
            raise cls(f"a price is between 1 and {MAX_PRICE} minor units", field=field)
        return amount


class QuantityMustBePositive(InvalidInput):
    """At least one unit; `check` also holds the quantity to `QuantityMustFit`."""

    code = "QUANTITY_NOT_POSITIVE"

    @classmethod
    def check(cls, quantity: int, field: str | None = "quantity") -> int:
        if quantity <= 0:
            raise cls(f"a quantity is a whole number from 1 to {MAX_QUANTITY}", field=field)
        return QuantityMustFit.check(quantity, field)


class QuantityMustFit(InvalidInput):
    code = "QUANTITY_TOO_LARGE"

    @classmethod
    def check(cls, quantity: int, field: str | None = "quantity") -> int:
        if quantity > MAX_QUANTITY:
            raise cls(f"a quantity is a whole number from 1 to {MAX_QUANTITY}", field=field)
        return quantity


class TextMustFit(InvalidInput):
    """Free text: clean, trimmed, optionally lower-cased, then measured in code
    points of its NFC form, which is what is stored."""

    code = "TEXT_OUT_OF_BOUNDS"

    @classmethod
    def check(
        cls,
        value: str,
        kind: str,
        field: str,
        *,
        required: bool = True,
        multiline: bool = False,
        lower: bool = False,
    ) -> str:
        value = TextMustBeClean.check(value, field, multiline=multiline)
        if lower:
            # Case mapping can leave a string that is no longer NFC.
            value = _nfc(value.lower())
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
        cleaned = sorted(
            {TextMustFit.check(t, "tag", f"{field}.{i}", lower=True) for i, t in enumerate(tags)}
        )
        if len(cleaned) > MAX_TAGS:
            raise cls(f"a product has at most {MAX_TAGS} tags", field=field)
        return cleaned


class ReservedCannotGoNegative(RuleBroken):
    code = "RESERVED_CANNOT_GO_NEGATIVE"

    @classmethod
    def check(cls, reserved: int, field: str | None = "quantity") -> None:
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


class OrderLinesMustHaveDistinctSkus(InvalidInput):
    """One line per sku: two lines of one sku would reserve its stock twice over
    and show the customer an order they cannot read at a glance."""

    code = "DUPLICATE_SKU"

    @classmethod
    def check(cls, sku: str, seen: set[str], field: str) -> None:
        if sku in seen:
            raise cls(f"sku {sku} appears twice; put its units in one line", field=field)
        seen.add(sku)


class InitialStockCannotBeNegative(InvalidInput):
    code = "INITIAL_STOCK_NEGATIVE"

    @classmethod
    def check(cls, quantity: int, field: str = "initialStock") -> int:
        if quantity < 0:
            raise cls("initial stock cannot be negative", field=field)
        return quantity


class OrderLinesMustShareCurrency(RuleBroken):
    code = "MIXED_CURRENCIES"

    @classmethod
    def check(cls, currencies: set[str], field: str = "lines") -> None:
        if len(currencies) != 1:
            raise cls("all products of an order must be priced in one currency", field=field)


class OrderTotalMustFit(RuleBroken):
    """An order's total is an Int in every answer about it: an order whose
    total could not be sent back is not placed (quantities times today's
    prices can exceed what any one of them can)."""

    code = "ORDER_TOTAL_TOO_LARGE"

    @classmethod
    def check(cls, total: int, field: str = "lines") -> None:
        if total > MAX_ORDER_TOTAL:
            raise cls(
                f"the order's total of {total} minor units exceeds {MAX_ORDER_TOTAL}; "
                "split it into smaller orders",
                field=field,
            )


class StockCannotExceedLimit(RuleBroken):
    code = "STOCK_LIMIT_EXCEEDED"

    @classmethod
    def check(cls, on_hand: int, field: str = "quantity") -> None:
        if on_hand > MAX_STOCK:
            raise cls(f"stock on hand is at most {MAX_STOCK} units", field=field)


class UnitsSoldMustFit(RuleBroken):
    code = "UNITS_SOLD_LIMIT_REACHED"

    @classmethod
    def check(cls, units_sold: int, field: str | None = None) -> None:
        if units_sold > MAX_UNITS_SOLD:
            raise cls(f"a product's units sold is at most {MAX_UNITS_SOLD}", field=field)


class VersionMustFit(RuleBroken):
    """Unreachable in practice (two billion changes to one object), and still
    checked: a version past the bound could be neither stored nor sent."""

    code = "VERSION_LIMIT_REACHED"

    @classmethod
    def check(cls, version: int) -> None:
        if version > MAX_VERSION:
            raise cls(f"an object changes at most {MAX_VERSION} times")
