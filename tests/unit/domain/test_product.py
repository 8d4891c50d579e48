"""Product: creation rules, updates that record only real changes, prices, discontinuation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from domain.errors import DomainError, InvalidInput, RuleBroken
from domain.events import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated
from domain.product import DiscontinuedProductIsFinal, Product, ProductStatus
from domain.rules import (
    MAX_PRICE,
    MAX_TAGS,
    CurrencyMustBeIsoCode,
    PriceMustBePositive,
    SkuMustBeWellFormed,
    TagsMustBeFew,
    TextMustFit,
)


def create(now: datetime, **overrides: Any) -> Product:
    fields: dict[str, Any] = {
        "sku": "MUG-1",
        "name": "Blue mug",
        "price": 1250,
        "currency": "EUR",
        "now": now,
    }
    fields.update(overrides)
    return Product.create("p1", **fields)


def snapshot(product: Product) -> tuple[object, ...]:
    return (
        product.sku,
        product.name,
        product.description,
        product.category,
        list(product.tags),
        product.price,
        product.currency,
        product.status,
        product.version,
        len(product.pending),
    )


def events(product: Product) -> list[object]:
    return [event for _, event in product.pending]


# --- creation ---------------------------------------------------------------------------


def test_creating_a_product_records_product_created_at_version_1(now: datetime) -> None:
    product = create(
        now,
        description="Holds coffee",
        category="Kitchen",
        tags=["mug", "Blue"],
    )

    assert product.version == 1
    assert product.pending == [
        (
            1,
            ProductCreated(
                "p1",
                sku="MUG-1",
                name="Blue mug",
                description="Holds coffee",
                category="kitchen",
                tags=["blue", "mug"],
                price=1250,
                currency="EUR",
                status="active",
            ),
        )
    ]
    assert product.created_at == now


def test_a_product_created_event_has_a_json_ready_payload_without_the_aggregate_id(
    now: datetime,
) -> None:
    (_, event), *_ = create(now, tags=["x"]).pending

    assert event.event_type == "ProductCreated"
    assert event.aggregate_type == "Product"
    assert event.payload() == {
        "sku": "MUG-1",
        "name": "Blue mug",
        "description": "",
        "category": "",
        "tags": ["x"],
        "price": 1250,
        "currency": "EUR",
        "status": "active",
    }


def test_a_new_product_is_active_and_orderable_by_default(now: datetime) -> None:
    product = create(now)

    assert product.status is ProductStatus.ACTIVE
    assert product.orderable


def test_a_new_product_may_start_as_a_draft_that_cannot_be_ordered(now: datetime) -> None:
    product = create(now, status=ProductStatus.DRAFT)

    assert product.status is ProductStatus.DRAFT
    assert not product.orderable
    assert events(product)[0] == ProductCreated(
        "p1",
        sku="MUG-1",
        name="Blue mug",
        description="",
        category="",
        tags=[],
        price=1250,
        currency="EUR",
        status="draft",
    )


def test_creating_a_product_as_discontinued_is_refused(now: datetime) -> None:
    with pytest.raises(DiscontinuedProductIsFinal) as raised:
        create(now, status=ProductStatus.DISCONTINUED)

    assert raised.value.code == "PRODUCT_DISCONTINUED"
    assert raised.value.field == "status"


def test_creation_normalises_sku_currency_text_category_and_tags(now: datetime) -> None:
    product = create(
        now,
        sku="  mug-1.blue_xl ",
        name="  Blue mug  ",
        description="  Holds coffee ",
        category=" Kitchen & Dining ",
        currency=" eur ",
        tags=[" Blue", "mug", "BLUE", "kitchen "],
    )

    assert product.sku == "MUG-1.BLUE_XL"
    assert product.name == "Blue mug"
    assert product.description == "Holds coffee"
    assert product.category == "kitchen & dining"
    assert product.currency == "EUR"
    assert product.tags == ["blue", "kitchen", "mug"]


@pytest.mark.parametrize(
    "sku",
    ["", "   ", "-MUG", ".MUG", "_MUG", "MUG 1", "MUG/1", "MÜG", "A" * 65],
    ids=[
        "empty",
        "blank",
        "leading-dash",
        "leading-dot",
        "leading-underscore",
        "space",
        "slash",
        "non-ascii",
        "65-chars",
    ],
)
def test_a_malformed_sku_is_rejected_as_sku_malformed(now: datetime, sku: str) -> None:
    with pytest.raises(SkuMustBeWellFormed) as raised:
        create(now, sku=sku)

    assert raised.value.code == "SKU_MALFORMED"
    assert raised.value.field == "sku"
    assert isinstance(raised.value, InvalidInput)


@pytest.mark.parametrize("sku", ["A", "9", "A" * 64, "A-B.C_D"])
def test_a_well_formed_sku_is_accepted(now: datetime, sku: str) -> None:
    assert create(now, sku=sku).sku == sku


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"description": "x" * 5001}, "description"),
        ({"category": "x" * 101}, "category"),
    ],
    ids=["empty-name", "blank-name", "name-too-long", "description-too-long", "category-too-long"],
)
def test_text_that_is_missing_or_too_long_is_rejected_as_text_out_of_bounds(
    now: datetime, overrides: dict[str, str], field: str
) -> None:
    with pytest.raises(TextMustFit) as raised:
        create(now, **overrides)

    assert raised.value.code == "TEXT_OUT_OF_BOUNDS"
    assert raised.value.field == field


def test_text_at_its_limit_is_accepted_and_description_and_category_may_be_empty(
    now: datetime,
) -> None:
    product = create(now, name="n" * 200, description="d" * 5000, category="c" * 100)
    assert (len(product.name), len(product.description), len(product.category)) == (200, 5000, 100)

    bare = create(now, description="", category="")
    assert (bare.description, bare.category) == ("", "")


@pytest.mark.parametrize(
    ("price", "code"),
    [
        (0, "PRICE_NOT_POSITIVE"),
        (-1, "PRICE_NOT_POSITIVE"),
        (-1250, "PRICE_NOT_POSITIVE"),
        (MAX_PRICE + 1, "PRICE_TOO_LARGE"),
        (10**12, "PRICE_TOO_LARGE"),
    ],
)
def test_a_price_outside_one_to_what_an_int_carries_is_rejected(
    now: datetime, price: int, code: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        create(now, price=price)

    assert raised.value.code == code
    assert raised.value.field == "price"


@pytest.mark.parametrize("price", [1, MAX_PRICE])
def test_prices_at_the_bounds_are_accepted(now: datetime, price: int) -> None:
    assert create(now, price=price).price == price


@pytest.mark.parametrize("currency", ["", "EU", "EURO", "E1R", "E R", "€€€", "US$"])
def test_a_currency_that_is_not_three_letters_is_rejected(now: datetime, currency: str) -> None:
    with pytest.raises(CurrencyMustBeIsoCode) as raised:
        create(now, currency=currency)

    assert raised.value.code == "CURRENCY_MALFORMED"
    assert raised.value.field == "currency"


def test_more_than_twenty_distinct_tags_are_rejected_as_too_many_tags(now: datetime) -> None:
    tags = [f"tag{i}" for i in range(MAX_TAGS + 1)]

    with pytest.raises(TagsMustBeFew) as raised:
        create(now, tags=tags)

    assert raised.value.code == "TOO_MANY_TAGS"
    assert raised.value.field == "tags"


def test_twenty_tags_are_accepted(now: datetime) -> None:
    tags = [f"tag{i:02}" for i in range(MAX_TAGS)]

    assert create(now, tags=tags).tags == tags


def test_tags_are_counted_after_duplicates_are_merged(now: datetime) -> None:
    tags = [f"tag{i}" for i in range(MAX_TAGS)] + ["TAG0", " tag1 "]

    assert len(create(now, tags=tags).tags) == MAX_TAGS


@pytest.mark.parametrize("tag", ["", "   ", "t" * 51], ids=["empty", "blank", "51-chars"])
def test_an_empty_or_overlong_tag_is_rejected_as_text_out_of_bounds_naming_its_place(
    now: datetime, tag: str
) -> None:
    with pytest.raises(TextMustFit) as raised:
        create(now, tags=["fine", tag])

    assert raised.value.code == "TEXT_OUT_OF_BOUNDS"
    assert raised.value.field == "tags.1"


def test_every_creation_rule_error_is_a_domain_error() -> None:
    for error in (
        SkuMustBeWellFormed,
        TextMustFit,
        PriceMustBePositive,
        CurrencyMustBeIsoCode,
        TagsMustBeFew,
    ):
        assert issubclass(error, InvalidInput)
        assert issubclass(error, DomainError)
    assert issubclass(DiscontinuedProductIsFinal, RuleBroken)


# --- update -----------------------------------------------------------------------------


def test_updating_the_name_records_product_updated_with_the_whole_new_state(
    now: datetime,
) -> None:
    product = create(now, description="Holds coffee", category="kitchen", tags=["mug"])

    product.update(name="Big blue mug")

    assert product.name == "Big blue mug"
    assert product.version == 2
    assert product.pending[-1] == (
        2,
        ProductUpdated(
            "p1",
            name="Big blue mug",
            description="Holds coffee",
            category="kitchen",
            tags=["mug"],
            status="active",
        ),
    )


def test_updating_every_field_at_once_records_one_event(now: datetime) -> None:
    product = create(now, status=ProductStatus.DRAFT)

    product.update(
        name="Mug",
        description="Ceramic",
        category="Kitchen",
        tags=["Blue", "ceramic"],
        status=ProductStatus.ACTIVE,
    )

    assert product.version == 2
    assert events(product)[1] == ProductUpdated(
        "p1",
        name="Mug",
        description="Ceramic",
        category="kitchen",
        tags=["blue", "ceramic"],
        status="active",
    )


def test_each_effective_update_takes_the_next_version(now: datetime) -> None:
    product = create(now)

    product.update(name="One")
    product.update(description="Two")
    product.update(category="three")

    assert product.version == 4
    assert [version for version, _ in product.pending] == [1, 2, 3, 4]


def test_an_update_without_arguments_records_nothing(now: datetime) -> None:
    product = create(now)

    product.update()

    assert product.version == 1
    assert len(product.pending) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Blue mug"},
        {"name": "  Blue mug  "},
        {"description": "Holds coffee"},
        {"category": "KITCHEN"},
        {"tags": ["MUG", "blue", "mug "]},
        {"status": ProductStatus.ACTIVE},
    ],
    ids=[
        "same-name",
        "same-name-padded",
        "same-description",
        "same-category-other-case",
        "same-tags-other-order-and-case",
        "same-status",
    ],
)
def test_an_update_that_changes_nothing_after_normalising_records_no_event(
    now: datetime, changes: dict[str, Any]
) -> None:
    product = create(now, description="Holds coffee", category="kitchen", tags=["blue", "mug"])
    before = snapshot(product)

    product.update(**changes)

    assert snapshot(product) == before


def test_a_draft_product_can_be_activated(now: datetime) -> None:
    product = create(now, status=ProductStatus.DRAFT)

    product.update(status=ProductStatus.ACTIVE)

    assert product.status is ProductStatus.ACTIVE
    assert product.orderable
    assert events(product)[-1] == ProductUpdated(
        "p1", name="Blue mug", description="", category="", tags=[], status="active"
    )


def test_a_draft_product_set_to_draft_again_records_nothing(now: datetime) -> None:
    product = create(now, status=ProductStatus.DRAFT)

    product.update(status=ProductStatus.DRAFT)

    assert product.version == 1


def test_an_active_product_cannot_go_back_to_draft(now: datetime) -> None:
    product = create(now)
    before = snapshot(product)

    with pytest.raises(RuleBroken) as raised:
        product.update(status=ProductStatus.DRAFT, name="Renamed")

    assert raised.value.code == "ACTIVE_CANNOT_RETURN_TO_DRAFT"
    assert raised.value.field == "status"
    assert snapshot(product) == before


def test_an_update_cannot_discontinue_a_product(now: datetime) -> None:
    product = create(now)
    before = snapshot(product)

    with pytest.raises(RuleBroken) as raised:
        product.update(status=ProductStatus.DISCONTINUED)

    assert not isinstance(raised.value, DiscontinuedProductIsFinal)
    assert raised.value.field == "status"
    assert snapshot(product) == before


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"name": ""}, TextMustFit, "name"),
        ({"name": "x" * 201}, TextMustFit, "name"),
        ({"description": "x" * 5001}, TextMustFit, "description"),
        ({"category": "x" * 101}, TextMustFit, "category"),
        ({"tags": [f"t{i}" for i in range(21)]}, TagsMustBeFew, "tags"),
        ({"tags": [""]}, TextMustFit, "tags.0"),
    ],
    ids=["empty-name", "long-name", "long-description", "long-category", "21-tags", "empty-tag"],
)
def test_an_invalid_update_is_refused_and_changes_nothing(
    now: datetime, changes: dict[str, Any], error: type[DomainError], field: str
) -> None:
    product = create(now)
    before = snapshot(product)

    with pytest.raises(error) as raised:
        product.update(**changes)

    assert raised.value.field == field
    assert snapshot(product) == before


def test_an_update_refused_on_a_later_field_leaves_the_earlier_fields_unchanged(
    now: datetime,
) -> None:
    product = create(now)

    with pytest.raises(TextMustFit):
        product.update(name="Renamed", tags=[""])

    assert product.name == "Blue mug"


# --- price ------------------------------------------------------------------------------


def test_changing_the_price_records_price_changed(now: datetime) -> None:
    product = create(now)

    product.change_price(1500)

    assert (product.price, product.currency, product.version) == (1500, "EUR", 2)
    assert product.pending[-1] == (
        2,
        PriceChanged("p1", old_price=1250, new_price=1500, currency="EUR"),
    )


def test_changing_the_currency_alone_records_price_changed(now: datetime) -> None:
    product = create(now)

    product.change_price(1250, "usd")

    assert (product.price, product.currency) == (1250, "USD")
    assert events(product)[-1] == PriceChanged("p1", old_price=1250, new_price=1250, currency="USD")


@pytest.mark.parametrize("currency", [None, "EUR", " eur "])
def test_setting_the_same_price_records_nothing(now: datetime, currency: str | None) -> None:
    product = create(now)
    before = snapshot(product)

    product.change_price(1250, currency)

    assert snapshot(product) == before


@pytest.mark.parametrize(
    ("price", "code"),
    [(0, "PRICE_NOT_POSITIVE"), (-5, "PRICE_NOT_POSITIVE"), (MAX_PRICE + 1, "PRICE_TOO_LARGE")],
)
def test_an_invalid_new_price_is_refused_and_changes_nothing(
    now: datetime, price: int, code: str
) -> None:
    product = create(now)
    before = snapshot(product)

    with pytest.raises(InvalidInput) as raised:
        product.change_price(price)

    assert raised.value.code == code
    assert raised.value.field == "price"
    assert snapshot(product) == before


def test_an_invalid_new_currency_is_refused_and_leaves_the_price_unchanged(
    now: datetime,
) -> None:
    product = create(now)
    before = snapshot(product)

    with pytest.raises(CurrencyMustBeIsoCode) as raised:
        product.change_price(999, "EURO")

    assert raised.value.field == "currency"
    assert snapshot(product) == before


# --- discontinuation --------------------------------------------------------------------


def test_discontinuing_a_product_records_product_discontinued(now: datetime) -> None:
    product = create(now)

    product.discontinue()

    assert product.status is ProductStatus.DISCONTINUED
    assert not product.orderable
    assert product.pending[-1] == (2, ProductDiscontinued("p1"))


def test_a_draft_product_can_be_discontinued(now: datetime) -> None:
    product = create(now, status=ProductStatus.DRAFT)

    product.discontinue()

    assert product.status is ProductStatus.DISCONTINUED


def test_discontinuing_twice_records_one_event(now: datetime) -> None:
    product = create(now)

    product.discontinue()
    product.discontinue()

    assert product.version == 2
    assert [type(e) for e in events(product)] == [ProductCreated, ProductDiscontinued]


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(name="Renamed"),
        lambda p: p.update(),
        lambda p: p.update(status=ProductStatus.ACTIVE),
        lambda p: p.change_price(999),
        lambda p: p.change_price(1250),
    ],
    ids=["rename", "empty-update", "reactivate", "new-price", "same-price"],
)
def test_a_discontinued_product_is_final(now: datetime, change: Any) -> None:
    product = create(now)
    product.discontinue()
    before = snapshot(product)

    with pytest.raises(DiscontinuedProductIsFinal) as raised:
        change(product)

    assert raised.value.code == "PRODUCT_DISCONTINUED"
    assert raised.value.field == "productId"
    assert snapshot(product) == before
