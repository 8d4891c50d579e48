"""The index mappings follow the document types: every field of a document type is
mapped, every mapped field is in the type, and each with a compatible type."""

from __future__ import annotations

import types
from typing import Any, NotRequired, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from readmodel.documents import (
    CustomerDocument,
    OrderDocument,
    ProductDocument,
    customer_document,
    order_document,
    order_line_document,
    product_document,
)
from readmodel.indexes import CUSTOMERS, ORDERS, PRODUCTS, IndexDefinition

# What each Elasticsearch field type holds, as the documents carry it (dates as ISO text).
_LEAVES: dict[str, type] = {
    "keyword": str,
    "text": str,
    "date": str,
    "long": int,
    "integer": int,
    "boolean": bool,
}


def _bare(hint: Any) -> Any:
    """The type without NotRequired and without None."""
    if get_origin(hint) is NotRequired:
        hint = get_args(hint)[0]
    if get_origin(hint) in (Union, types.UnionType):
        left = [arg for arg in get_args(hint) if arg is not type(None)]
        assert len(left) == 1, f"{hint}: one type and None at most"
        hint = left[0]
    return hint


def _mismatches(path: str, properties: dict[str, Any], document_type: Any) -> list[str]:
    hints = get_type_hints(document_type, include_extras=True)
    found = [f"{path}{name}: in the type, not mapped" for name in hints.keys() - properties.keys()]
    found += [f"{path}{name}: mapped, not in the type" for name in properties.keys() - hints]
    for name in sorted(properties.keys() & hints.keys()):
        mapping, hint = properties[name], _bare(hints[name])
        where = f"{path}{name}"
        if get_origin(hint) is list:
            # Elasticsearch has no array type: a list maps as its items do.
            hint = get_args(hint)[0]
        if "properties" in mapping:
            if not is_typeddict(hint):
                found.append(f"{where}: mapped as an object, typed {hint}")
            else:
                found += _mismatches(f"{where}.", mapping["properties"], hint)
        elif mapping["type"] == "completion":
            if not is_typeddict(hint) or "input" not in get_type_hints(hint):
                found.append(f"{where}: a completion field needs an input list, typed {hint}")
        elif _LEAVES.get(mapping["type"]) is not hint:
            found.append(f"{where}: mapped {mapping['type']}, typed {hint}")
    return found


@pytest.mark.parametrize(
    ("index", "document_type"),
    [(PRODUCTS, ProductDocument), (ORDERS, OrderDocument), (CUSTOMERS, CustomerDocument)],
    ids=["products", "orders", "customers"],
)
def test_every_mapped_field_is_in_the_document_type_and_every_field_is_mapped(
    index: IndexDefinition, document_type: Any
) -> None:
    assert _mismatches("", index.properties, document_type) == []


def test_the_check_finds_a_field_the_mapping_lacks() -> None:
    properties = {k: v for k, v in PRODUCTS.properties.items() if k != "in_stock"}
    assert _mismatches("", properties, ProductDocument) == ["in_stock: in the type, not mapped"]


def test_the_check_finds_a_nested_field_typed_unlike_its_mapping() -> None:
    lines = ORDERS.properties["lines"]
    properties = {
        **ORDERS.properties,
        "lines": {**lines, "properties": {**lines["properties"], "quantity": {"type": "text"}}},
    }
    assert _mismatches("", properties, OrderDocument) == [
        f"lines.quantity: mapped text, typed {int}"
    ]


def test_a_product_document_computes_what_is_available_from_its_stock() -> None:
    doc = product_document(
        id="p",
        version=1,
        sku="KETTLE-1",
        name="Steel Kettle",
        description="",
        category="kitchen",
        tags=("tea",),
        price=2599,
        currency="EUR",
        status="active",
        created_at=None,
        updated_at=None,
        stock_version=3,
        on_hand=5,
        reserved=5,
        units_sold=2,
    )
    assert (doc["available"], doc["in_stock"]) == (0, False)
    assert (doc["name_sort"], doc["name_suggest"]) == (
        "steel kettle",
        {"input": ["Steel Kettle", "Steel", "Kettle"]},
    )


def test_a_product_without_a_stock_row_has_none_on_hand() -> None:
    doc = product_document(
        id="p",
        version=1,
        sku="KETTLE-1",
        name="Kettle",
        description="",
        category="kitchen",
        tags=(),
        price=1,
        currency="EUR",
        status="draft",
        created_at=None,
        updated_at=None,
        stock_version=None,
        on_hand=None,
        reserved=None,
        units_sold=None,
    )
    assert [doc[k] for k in ("stock_version", "on_hand", "available", "in_stock")] == [
        0,
        0,
        0,
        False,
    ]


def test_an_order_document_counts_its_lines_and_their_amounts() -> None:
    line = order_line_document(
        product_id="p", sku="KETTLE-1", product_name="Kettle", quantity=3, unit_price=250
    )
    doc = order_document(
        id="o",
        version=1,
        status="placed",
        currency="EUR",
        total=750,
        placed_at=None,
        paid_at=None,
        shipped_at=None,
        cancelled_at=None,
        updated_at=None,
        customer={"id": "c", "name": "Ada", "email": "ada@example.org", "erased": False},
        lines=[line],
    )
    assert (doc["line_count"], doc["lines"][0]["amount"]) == (1, 750)


def test_a_customer_without_orders_has_zero_figures() -> None:
    doc = customer_document(
        id="c",
        version=1,
        name="Ada",
        email="ada@example.org",
        erased=False,
        order_count=None,
        total_spent=None,
        last_order_at=None,
        created_at=None,
        updated_at=None,
    )
    assert (doc["order_count"], doc["total_spent"], doc["name_sort"]) == (0, 0, "ada")
