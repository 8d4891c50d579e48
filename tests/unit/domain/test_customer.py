"""Customer: registration with a normalised email, and erasure of personal data."""

from __future__ import annotations

import pytest

from domain.customer import Customer, CustomerIsErased
from domain.errors import RuleBroken
from domain.events import CustomerErased, CustomerRegistered
from domain.rules import EmailMustBeWellFormed, TextMustFit


def register(email: str = "ada@example.com", name: str = "Ada Lovelace") -> Customer:
    return Customer.register("c1", email=email, name=name)


def test_registering_records_customer_registered_at_version_1() -> None:
    customer = register()

    assert (customer.email, customer.name, customer.erased) == (
        "ada@example.com",
        "Ada Lovelace",
        False,
    )
    assert customer.version == 1
    assert customer.pending == [
        (1, CustomerRegistered("c1", email="ada@example.com", name="Ada Lovelace"))
    ]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ADA@EXAMPLE.COM \n", "ada@example.com"),
        ("Ada.Lovelace+Shop@Mail.Example.Org", "ada.lovelace+shop@mail.example.org"),
    ],
)
def test_the_email_is_stored_trimmed_and_lowercase(given: str, stored: str) -> None:
    customer = register(email=given)

    assert customer.email == stored
    assert customer.pending[0][1] == CustomerRegistered("c1", email=stored, name="Ada Lovelace")


@pytest.mark.parametrize(
    "email",
    ["a@b.co", "first.last+tag@sub.example.org", "x" * 64 + "@example.com", "o'neil@example.ie"],
)
def test_a_well_formed_email_is_accepted(email: str) -> None:
    assert register(email=email).email == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "ada@",
        "ada@example",
        "ada@@example.com",
        "ada@exa@mple.com",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        "ada@.example.com",
        "ada@example..com",
        "ada@example.com.",
        "x" * 65 + "@example.com",
        "ada@" + "d" * 250 + ".com",
    ],
    ids=[
        "empty",
        "blank",
        "no-at",
        "no-local-part",
        "no-domain",
        "domain-without-dot",
        "double-at",
        "two-ats",
        "space-in-local-part",
        "space-in-domain",
        "domain-starts-with-dot",
        "empty-domain-label",
        "trailing-dot",
        "local-part-over-64",
        "over-254-characters",
    ],
)
def test_a_malformed_email_is_rejected(email: str) -> None:
    with pytest.raises(EmailMustBeWellFormed) as raised:
        register(email=email)

    assert raised.value.code == "EMAIL_MALFORMED"
    assert raised.value.field == "email"


@pytest.mark.parametrize("name", ["", "   ", "n" * 201], ids=["empty", "blank", "201-chars"])
def test_a_missing_or_overlong_name_is_rejected(name: str) -> None:
    with pytest.raises(TextMustFit) as raised:
        register(name=name)

    assert raised.value.code == "TEXT_OUT_OF_BOUNDS"
    assert raised.value.field == "name"


def test_the_name_is_stored_trimmed() -> None:
    assert register(name="  Ada  ").name == "Ada"


def test_a_registered_customer_can_order() -> None:
    customer = register()

    customer.can_order()  # the check: it raises CustomerIsErased for an erased customer

    assert customer.erased is False
    assert customer.pending[-1][1].event_type == "CustomerRegistered"


def test_erasing_a_customer_removes_their_personal_data() -> None:
    customer = register()

    customer.erase()

    assert customer.email is None
    assert customer.name is None
    assert customer.erased
    assert customer.id == "c1"


def test_erasing_a_customer_records_customer_erased() -> None:
    customer = register()

    customer.erase()

    assert customer.version == 2
    assert customer.pending[-1] == (2, CustomerErased("c1"))
    assert customer.pending[-1][1].payload() == {}


def test_erasing_an_erased_customer_again_records_nothing() -> None:
    customer = register()

    customer.erase()
    customer.erase()

    assert customer.version == 2
    assert [type(event) for _, event in customer.pending] == [CustomerRegistered, CustomerErased]


def test_an_erased_customer_cannot_order() -> None:
    customer = register()
    customer.erase()

    with pytest.raises(CustomerIsErased) as raised:
        customer.can_order()

    assert raised.value.code == "CUSTOMER_ERASED"
    assert raised.value.field == "customerId"
    assert isinstance(raised.value, RuleBroken)
