"""The text rules every string of every command passes, and the bounds that keep
every figure within what the API can send back."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.events import ProductDiscontinued
from domain.order import Order, OrderLine
from domain.rules import (
    MAX_INT,
    MAX_ORDER_TOTAL,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_STOCK,
    MAX_TEXT,
    MAX_UNITS_SOLD,
    MAX_VERSION,
    CurrencyMustBeIsoCode,
    EmailMustBeWellFormed,
    IdMustBeWellFormed,
    OrderTotalMustFit,
    SkuMustBeWellFormed,
    StockCannotExceedLimit,
    TagsMustBeFew,
    TextMustBeClean,
    TextMustFit,
    UnitsSoldMustFit,
    VersionMustFit,
)
from domain.stock import Stock

# What a client may try: Elasticsearch's reserved completion characters, a
# noncharacter, both halves of a surrogate pair alone, C1 controls, DEL.
HOSTILE = [
    "\x00",
    "\x1e",
    "\x1f",
    "\x7f",
    "\x85",
    "\x9f",
    "\ufffe",
    "\uffff",
    "\ufdd0",
    "\U0010ffff",
    "\ud800",
    "\udfff",
    "\x0b",
]


def forbidden(char: str, multiline: bool) -> bool:
    """The rule, restated from Unicode's own data rather than from the rule's regex."""
    if multiline and char in "\t\n\r":
        return False
    code = ord(char)
    return (
        unicodedata.category(char) in ("Cc", "Cs")
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    )


def trimmed(value: str) -> str:
    """Surrounding white space goes, but never a character the rule must see."""

    def trims(c: str) -> bool:
        return c.isspace() and not forbidden(c, multiline=True)

    start, end = 0, len(value)
    while start < end and trims(value[start]):
        start += 1
    while end > start and trims(value[end - 1]):
        end -= 1
    return value[start:end]


def nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


anything = st.text(
    st.one_of(
        st.characters(exclude_categories=()),  # every code point, surrogates included
        st.sampled_from([*HOSTILE, "\t", "\n", "\r", " ", "\u0301", "e", "\U0001f389"]),
    ),
    max_size=60,
)


@settings(max_examples=500)
@given(value=anything, multiline=st.booleans())
@example(value="nul\x00byte", multiline=False)
@example(value="  tab\tinside  ", multiline=True)
@example(value="e\u0301", multiline=False)
def test_clean_text_is_either_refused_with_its_code_or_returned_nfc_with_no_forbidden_character(
    value: str, multiline: bool
) -> None:
    expected_refusal = any(forbidden(c, multiline) for c in trimmed(value))
    try:
        result = TextMustBeClean.check(value, "name", multiline=multiline)
    except TextMustBeClean as refused:
        assert expected_refusal
        assert (refused.code, refused.field) == ("TEXT_INVALID_CHARACTERS", "name")
        return
    assert not expected_refusal
    assert result == nfc(trimmed(value))
    assert unicodedata.is_normalized("NFC", result)
    assert not any(forbidden(c, multiline) for c in result)


@settings(max_examples=300)
@given(
    value=anything,
    kind=st.sampled_from(["name", "description", "category", "tag", "reason"]),
    lower=st.booleans(),
)
def test_fitting_text_is_refused_with_a_code_or_stored_nfc_trimmed_and_within_its_bound(
    value: str, kind: str, lower: bool
) -> None:
    multiline = kind == "description"
    try:
        result = TextMustFit.check(value, kind, "field", multiline=multiline, lower=lower)
    except (TextMustBeClean, TextMustFit) as refused:
        assert refused.code in ("TEXT_INVALID_CHARACTERS", "TEXT_OUT_OF_BOUNDS")
        assert refused.field == "field"
        return
    assert result and result == trimmed(result)
    assert len(result) <= MAX_TEXT[kind]
    assert unicodedata.is_normalized("NFC", result)
    assert not any(forbidden(c, multiline) for c in result)


@pytest.mark.parametrize("char", HOSTILE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_every_hostile_character_is_refused_wherever_it_stands(char: str, where: str) -> None:
    value = {"start": char + "mug", "middle": "m" + char + "ug", "end": "mug" + char}[where]

    for multiline in (False, True):
        with pytest.raises(TextMustBeClean) as raised:
            TextMustBeClean.check(value, "description", multiline=multiline)
        assert raised.value.field == "description"
        assert f"U+{ord(char):04X}" in raised.value.message


@pytest.mark.parametrize("char", ["\t", "\n", "\r"], ids=["tab", "lf", "cr"])
def test_tab_and_line_breaks_are_kept_in_a_multi_line_field_and_refused_in_any_other(
    char: str,
) -> None:
    assert TextMustBeClean.check(f"one{char}two", "description", multiline=True) == (
        f"one{char}two"
    )
    with pytest.raises(TextMustBeClean):
        TextMustBeClean.check(f"one{char}two", "name")


def test_a_pasted_trailing_newline_is_trimmed_but_a_trailing_control_character_is_not() -> None:
    assert TextMustBeClean.check("  Mug\n", "name") == "Mug"
    # str.strip() would drop U+001F as white space and store "Mug" unasked.
    with pytest.raises(TextMustBeClean):
        TextMustBeClean.check("Mug\x1f", "name")


def test_text_is_stored_nfc_and_measured_after_normalising() -> None:
    decomposed = "e\u0301" * MAX_TEXT["name"]  # twice the bound in code points, as sent

    name = TextMustFit.check(decomposed, "name", "name")

    assert name == "\u00e9" * MAX_TEXT["name"]
    with pytest.raises(TextMustFit):
        TextMustFit.check(decomposed + "e", "name", "name")


def test_emoji_and_other_planes_are_ordinary_text() -> None:
    text = "Party \U0001f389 mug \U0001f468\u200d\U0001f469\u200d\U0001f467 \u4e2d\u6587"

    assert TextMustFit.check(text, "name", "name") == text


def test_a_hundred_kilobytes_is_refused_for_its_length_not_its_content() -> None:
    with pytest.raises(TextMustFit) as raised:
        TextMustFit.check("x" * 100_000, "description", "description", multiline=True)

    assert (raised.value.code, raised.value.field) == ("TEXT_OUT_OF_BOUNDS", "description")


def test_a_refused_tag_is_named_by_its_place_in_the_list() -> None:
    with pytest.raises(TextMustBeClean) as raised:
        TagsMustBeFew.check(["fine", "also fine", "bad\x00"])

    assert raised.value.field == "tags.2"


# --- formatted strings: the text rule first, then each one's own ---


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (SkuMustBeWellFormed.check, "MUG\x00"),
        (EmailMustBeWellFormed.check, "ada@example.com\ud800"),
        (CurrencyMustBeIsoCode.check, "EU\x1e"),
    ],
    ids=["sku", "email", "currency"],
)
def test_a_formatted_field_with_a_hostile_character_gets_the_text_code(
    rule: object, value: str
) -> None:
    with pytest.raises(TextMustBeClean) as raised:
        rule(value)  # type: ignore[operator]

    assert raised.value.code == "TEXT_INVALID_CHARACTERS"


def test_a_sku_or_currency_is_ascii_as_sent_not_after_upper_casing() -> None:
    # "\ufb00".upper() is "FF" and "\u0131".upper() is "I": neither is what the client wrote.
    for sku in ("MUG-\ufb00", "\u0131TEM"):
        with pytest.raises(SkuMustBeWellFormed):
            SkuMustBeWellFormed.check(sku)
    with pytest.raises(CurrencyMustBeIsoCode):
        CurrencyMustBeIsoCode.check("e\ufb00")
    assert SkuMustBeWellFormed.check(" mug-1 ") == "MUG-1"
    assert CurrencyMustBeIsoCode.check("eur") == "EUR"


@pytest.mark.parametrize("value", [str(uuid.uuid4()), "id-1", "nope", "A" * 36])
def test_ids_the_write_side_could_have_made_pass(value: str) -> None:
    assert IdMustBeWellFormed.check(value, "productId") == value


@pytest.mark.parametrize(
    "value",
    ["", " id-1", "A" * 37, "x" * 10_000, "id 1", "id/1", "\U0001f389", "id-\u0661"],
    ids=["empty", "space", "37", "10k", "inner-space", "slash", "emoji", "arabic-digit"],
)
def test_an_id_that_could_not_have_been_made_is_malformed_and_names_its_field(value: str) -> None:
    with pytest.raises(IdMustBeWellFormed) as raised:
        IdMustBeWellFormed.check(value, "orderId")

    assert (raised.value.code, raised.value.field) == ("ID_MALFORMED", "orderId")


def test_an_id_with_a_hostile_character_gets_the_text_code() -> None:
    with pytest.raises(TextMustBeClean) as raised:
        IdMustBeWellFormed.check("id-1\x00", "customerId")

    assert raised.value.field == "customerId"


# --- amounts and counts ---


def test_every_bound_fits_what_the_api_carries() -> None:
    # Int in and out: a price, an order's total (so each line's amount), stock.
    assert MAX_PRICE == MAX_ORDER_TOTAL == MAX_VERSION == MAX_UNITS_SOLD == MAX_INT == 2**31 - 1
    assert MAX_QUANTITY <= MAX_STOCK < MAX_INT


def test_an_order_whose_total_an_int_cannot_carry_is_not_placed(now: datetime) -> None:
    lines = [OrderLine("p1", "BIG-1", 2, MAX_PRICE)]

    with pytest.raises(OrderTotalMustFit) as raised:
        Order.place("o1", customer_id="c1", lines=lines, currencies={"EUR"}, now=now)

    assert (raised.value.code, raised.value.field) == ("ORDER_TOTAL_TOO_LARGE", "lines")


def test_an_order_totalling_exactly_the_bound_is_placed(now: datetime) -> None:
    lines = [OrderLine("p1", "A", 1, MAX_PRICE - 1), OrderLine("p2", "B", 1, 1)]

    order = Order.place("o1", customer_id="c1", lines=lines, currencies={"EUR"}, now=now)

    assert order.total == MAX_ORDER_TOTAL


def test_stock_on_hand_cannot_be_received_or_counted_past_its_bound() -> None:
    stock = Stock("p1", on_hand=MAX_STOCK - 1)

    with pytest.raises(StockCannotExceedLimit) as received:
        stock.receive(2)
    with pytest.raises(StockCannotExceedLimit) as adjusted:
        stock.adjust(MAX_STOCK + 1)

    assert (received.value.code, received.value.field) == ("STOCK_LIMIT_EXCEEDED", "quantity")
    assert adjusted.value.field == "onHand"
    assert (stock.on_hand, stock.version) == (MAX_STOCK - 1, 0)
    stock.receive(1)
    assert stock.on_hand == MAX_STOCK


def test_units_sold_stop_at_their_bound_and_the_shipment_changes_nothing() -> None:
    stock = Stock("p1", on_hand=10, reserved=5, units_sold=MAX_UNITS_SOLD - 4)

    with pytest.raises(UnitsSoldMustFit):
        stock.commit("o1", 5)

    assert (stock.on_hand, stock.reserved, stock.units_sold) == (10, 5, MAX_UNITS_SOLD - 4)


def test_an_aggregate_at_its_last_version_records_nothing_more() -> None:
    aggregate = Aggregate("p1", version=MAX_VERSION)

    with pytest.raises(VersionMustFit) as raised:
        aggregate.record(ProductDiscontinued("p1"))

    assert raised.value.code == "VERSION_LIMIT_REACHED"
    assert (aggregate.version, aggregate.pending) == (MAX_VERSION, [])


def test_a_customer_name_and_email_are_stored_clean() -> None:
    customer = Customer.register("c1", email=" ADA@Example.COM\n", name="Ada\u0301 ")

    assert (customer.email, customer.name) == ("ada@example.com", nfc("Ada\u0301"))
