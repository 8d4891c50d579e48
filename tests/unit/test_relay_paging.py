"""Relay's paging and node lookups as the builders and the limits see them:
backward pages, the one paging helper shared by every search, `lookup_many`,
and how `last` and `ids` count towards the cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from graphql import parse

from api.limits import PAGE_SIZE_CAP, Measures, measure_operation
from api.schema import build_schema
from readmodel.queries import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PRICE_BUCKETS,
    InvalidQuery,
    OrderSort,
    ProductSort,
    Scope,
    customer_search,
    encode_cursor,
    lookup_many,
    order_search,
    paging,
    product_search,
)
from readmodel.reader import PriceBucket, ProductFacetCounts, _facets

GRAPHQL_SCHEMA = build_schema()._schema

# Every search a connection runs, with the sort its forward page uses.
SEARCHES: list[tuple[str, Callable[..., dict[str, Any]]]] = [
    ("products", product_search),
    ("products-facets", lambda **kw: product_search(facets=True, **kw)),
    ("products-relevance", lambda **kw: product_search(search="mug", **kw)),
    ("orders", order_search),
    ("customers", customer_search),
    ("customers-relevance", lambda **kw: customer_search(search="ann", **kw)),
]


@pytest.mark.parametrize(("name", "search"), SEARCHES, ids=[n for n, _ in SEARCHES])
def test_a_backward_page_is_the_same_search_with_every_sort_reversed(
    name: str, search: Callable[..., dict[str, Any]]
) -> None:
    forward = search(first=5)
    backward = search(last=5)

    assert backward["size"] == forward["size"] == 6
    assert {k: v for k, v in backward.items() if k != "sort"} == {
        k: v for k, v in forward.items() if k != "sort"
    }
    assert len(backward["sort"]) == len(forward["sort"])
    for ahead, behind in zip(forward["sort"], backward["sort"], strict=True):
        ((field, order),) = ahead.items()
        other = "asc" if order == "desc" else "desc"
        if field == "_score":
            assert behind == {"_score": other}
        else:  # missing values sort last forward, so first backward
            assert behind == {field: {"order": other, "missing": "_first"}}


@pytest.mark.parametrize(("name", "search"), SEARCHES, ids=[n for n, _ in SEARCHES])
def test_before_becomes_search_after_of_the_reversed_search(
    name: str, search: Callable[..., dict[str, Any]]
) -> None:
    values = [1.5, "id-9"] if "relevance" in name else [1735689600000, "id-9"]
    if name == "products-relevance":
        values = [1.5, 1735689600000, "id-9"]
    if name == "customers":
        values = ["ann", "id-9"]
    cursor = encode_cursor(values)

    assert search(last=3, before=cursor)["search_after"] == values
    assert search(first=3, after=cursor)["search_after"] == values
    assert "search_after" not in search(last=3)


def test_neither_first_nor_last_serves_the_default_page_forward() -> None:
    assert paging() == paging(first=DEFAULT_PAGE)
    assert product_search()["size"] == DEFAULT_PAGE + 1
    assert paging(before=encode_cursor([1, "id-1"])).backward
    assert paging(before=encode_cursor([1, "id-1"])).size == DEFAULT_PAGE
    assert not paging(after="", before="").backward  # an empty cursor is none


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"first": 2, "last": 2}, "last"),
        ({"last": 0}, "last"),
        ({"last": -1}, "last"),
        ({"last": MAX_PAGE + 1}, "last"),
        ({"first": -1}, "first"),
        ({"after": "a", "before": "b"}, "before"),
        ({"first": 2, "before": "b"}, "before"),
        ({"last": 2, "after": "a"}, "after"),
        ({"last": 2, "before": "!!not base64!!"}, "before"),
        ({"last": 2, "before": encode_cursor([1, 2, 3, 4])}, "before"),
        ({"last": 2, "before": encode_cursor([1.5, "id-1"])}, "before"),
    ],
    ids=[
        "first-and-last",
        "last-0",
        "last-negative",
        "last-101",
        "first-negative",
        "after-and-before",
        "first-with-before",
        "last-with-after",
        "before-malformed",
        "before-too-long",
        "before-of-another-sort",
    ],
)
@pytest.mark.parametrize(
    ("name", "search"), SEARCHES[:1] + SEARCHES[3:5], ids=["products", "orders", "customers"]
)
def test_bad_paging_arguments_are_refused_naming_the_argument(
    name: str, search: Callable[..., dict[str, Any]], arguments: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidQuery) as caught:
        search(**arguments)

    assert caught.value.argument == argument


def test_a_cursor_serves_both_directions_of_every_sort() -> None:
    for sort in ProductSort:
        cursor_length = 3 if sort is ProductSort.RELEVANCE else 2
        values: list[Any] = [1.5, 1735689600000, "id-1"][-cursor_length:]
        if sort is ProductSort.NAME:
            values = ["mug", "id-1"]
        text = "mug" if sort is ProductSort.RELEVANCE else None
        cursor = encode_cursor(values)
        ahead = product_search(search=text, sort=sort, first=2, after=cursor)
        behind = product_search(search=text, sort=sort, last=2, before=cursor)
        assert ahead["search_after"] == behind["search_after"] == values
    for order in OrderSort:
        cursor = encode_cursor([5, "id-1"])
        assert order_search(sort=order, last=2, before=cursor)["search_after"] == [5, "id-1"]


def test_lookup_many_keeps_each_read_model_to_its_index_and_its_rows() -> None:
    body = lookup_many(
        ["id-1", "id-2"],
        {
            "products": ("p-products", Scope(active_only=True)),
            "orders": ("p-orders", Scope(customer_id="c-1")),
        },
    )

    assert body == {
        "query": {
            "bool": {
                "filter": [{"ids": {"values": ["id-1", "id-2"]}}],
                "should": [
                    {
                        "bool": {
                            "filter": [
                                {"term": {"_index": "p-products"}},
                                {"term": {"status": "active"}},
                            ],
                            "_name": "products",
                        }
                    },
                    {
                        "bool": {
                            "filter": [
                                {"term": {"_index": "p-orders"}},
                                {"term": {"customer.id": "c-1"}},
                            ],
                            "_name": "orders",
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        },
        "size": 2,
    }


def measured(query: str) -> Measures:
    found = measure_operation(GRAPHQL_SCHEMA, parse(query), None)
    assert found is not None
    return found


@pytest.mark.parametrize("field", ["products", "orders", "customers"])
def test_last_counts_towards_the_cost_as_first_does(field: str) -> None:
    selection = "{ edges { node { id } } }"
    by_first = measured(f"{{ {field}(first: 7) {selection} }}").cost
    by_last = measured(f"{{ {field}(last: 7) {selection} }}").cost
    left_out = measured(f"{{ {field} {selection} }}").cost
    null = measured(f"{{ {field}(first: null, last: null) {selection} }}").cost
    variable = measured(f"query($n: Int) {{ {field}(last: $n) {selection} }}").cost

    assert by_first == by_last == 1 + 7 * 3
    assert left_out == null == 1 + DEFAULT_PAGE * 3
    assert variable == 1 + PAGE_SIZE_CAP * 3
    assert measured(f"{{ {field}(first: 2, last: 90) {selection} }}").cost == 1 + 90 * 3


def test_nodes_count_each_id_asked_for() -> None:
    ids = ", ".join(f'"{i}"' for i in range(40))

    assert measured(f"{{ nodes(ids: [{ids}]) {{ id }} }}").cost == 1 + 40
    assert measured('{ nodes(ids: "one") { id } }').cost == 1 + 1
    assert measured("query($ids: [ID!]!) { nodes(ids: $ids) { id } }").cost == 1 + PAGE_SIZE_CAP
    assert measured('{ node(id: "x") { id } }').cost == 2


def test_the_reader_types_price_buckets_by_their_bounds_not_by_key_text() -> None:
    aggregations = {
        "categories": {"values": {"buckets": [{"key": "kitchen", "doc_count": 3}]}},
        "tags": {"values": {"buckets": [{"key": "tea", "doc_count": 2}]}},
        # As Elasticsearch answers a range aggregation: doubles, keys it made up.
        "price": {
            "values": {
                "buckets": [
                    {"key": "anything", "from": 0.0, "to": 1000.0, "doc_count": 4},
                    {"key": "10000.0-*", "from": 10000.0, "doc_count": 1},
                ]
            }
        },
        "in_stock": {"values": {"doc_count": 5}},
    }

    counts = _facets(aggregations)

    assert counts == ProductFacetCounts(
        categories=[("kitchen", 3)],
        tags=[("tea", 2)],
        prices=[
            PriceBucket(min=0, max=1000, count=4),
            PriceBucket(min=1000, max=2500, count=0),  # a bucket not answered counts none
            PriceBucket(min=2500, max=5000, count=0),
            PriceBucket(min=5000, max=10000, count=0),
            PriceBucket(min=10000, max=None, count=1),
        ],
        in_stock=5,
    )
    assert [(b.min, b.max) for b in counts.prices] == PRICE_BUCKETS
