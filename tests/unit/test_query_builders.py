"""Query builders, compared as dicts: what each argument puts into the search body."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from readmodel.queries import (
    MAX_PAGE,
    InvalidQuery,
    ProductFilter,
    ProductSort,
    decode_cursor,
    encode_cursor,
    product_search,
    product_suggest,
)

ACTIVE_ONLY = {"terms": {"status": ["active"]}}


def filters_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["query"]["bool"]["filter"])


def test_a_text_search_matches_across_weighted_fields_and_sorts_by_relevance() -> None:
    body = product_search(search="  red kettle  ")

    assert body == {
        "query": {
            "bool": {
                "filter": [ACTIVE_ONLY],
                "must": [
                    {
                        "bool": {
                            "should": [
                                {
                                    "multi_match": {
                                        "query": "red kettle",
                                        "fields": ["name^3", "description", "tags.text^2"],
                                        "type": "cross_fields",
                                        "operator": "and",
                                    }
                                },
                                {"term": {"sku": {"value": "RED KETTLE", "boost": 10}}},
                            ],
                            "minimum_should_match": 1,
                        }
                    }
                ],
            }
        },
        "sort": [{"_score": "desc"}, {"created_at": "desc"}, {"id": "asc"}],
        "size": 21,
        "track_total_hits": True,
    }


def test_browsing_without_text_lists_the_newest_first() -> None:
    body = product_search()

    assert body == {
        "query": {"bool": {"filter": [ACTIVE_ONLY]}},
        "sort": [{"created_at": "desc"}, {"id": "asc"}],
        "size": 21,
        "track_total_hits": True,
    }


@pytest.mark.parametrize("search", [None, "", "   "])
def test_relevance_without_text_falls_back_to_newest(search: str | None) -> None:
    body = product_search(search=search, sort=ProductSort.RELEVANCE)

    assert body["sort"] == [{"created_at": "desc"}, {"id": "asc"}]
    assert "must" not in body["query"]["bool"]


@pytest.mark.parametrize(
    ("sort", "clauses"),
    [
        (ProductSort.PRICE_ASC, [{"price": "asc"}]),
        (ProductSort.PRICE_DESC, [{"price": "desc"}]),
        (ProductSort.NAME, [{"name_sort": "asc"}]),
        (ProductSort.NEWEST, [{"created_at": "desc"}]),
        (ProductSort.UNITS_SOLD, [{"units_sold": "desc"}]),
    ],
)
def test_every_sort_ends_with_the_id_as_a_tiebreaker(
    sort: ProductSort, clauses: list[dict[str, str]]
) -> None:
    body = product_search(search="kettle", sort=sort)

    assert body["sort"] == [*clauses, {"id": "asc"}]


def test_categories_are_matched_lower_cased() -> None:
    body = product_search(filter=ProductFilter(categories=("Kitchen", "GARDEN")))

    assert filters_of(body) == [ACTIVE_ONLY, {"terms": {"category": ["kitchen", "garden"]}}]


def test_every_tag_asked_for_is_its_own_term() -> None:
    body = product_search(filter=ProductFilter(tags=("Steel", "eco")))

    assert filters_of(body) == [
        ACTIVE_ONLY,
        {"term": {"tags": "steel"}},
        {"term": {"tags": "eco"}},
    ]


@pytest.mark.parametrize(
    ("min_price", "max_price", "bounds"),
    [
        (100, 500, {"gte": 100, "lte": 500}),
        (100, None, {"gte": 100}),
        (None, 500, {"lte": 500}),
        (0, 0, {"gte": 0, "lte": 0}),
    ],
)
def test_a_price_range_keeps_only_the_bounds_given(
    min_price: int | None, max_price: int | None, bounds: dict[str, int]
) -> None:
    body = product_search(filter=ProductFilter(min_price=min_price, max_price=max_price))

    assert filters_of(body) == [ACTIVE_ONLY, {"range": {"price": bounds}}]


@pytest.mark.parametrize("in_stock", [True, False])
def test_in_stock_filters_either_way(in_stock: bool) -> None:
    body = product_search(filter=ProductFilter(in_stock=in_stock))

    assert filters_of(body) == [ACTIVE_ONLY, {"term": {"in_stock": in_stock}}]


def test_statuses_default_to_active_and_can_be_widened_or_dropped() -> None:
    assert filters_of(product_search(filter=ProductFilter())) == [ACTIVE_ONLY]
    widened = product_search(filter=ProductFilter(statuses=("active", "draft")))
    assert filters_of(widened) == [{"terms": {"status": ["active", "draft"]}}]
    assert filters_of(product_search(filter=ProductFilter(statuses=()))) == []


def test_all_filters_combine() -> None:
    body = product_search(
        search="mug",
        filter=ProductFilter(
            categories=("Kitchen",),
            tags=("Blue",),
            min_price=1,
            max_price=9,
            in_stock=True,
            statuses=("draft",),
        ),
    )

    assert filters_of(body) == [
        {"terms": {"status": ["draft"]}},
        {"terms": {"category": ["kitchen"]}},
        {"term": {"tags": "blue"}},
        {"range": {"price": {"gte": 1, "lte": 9}}},
        {"term": {"in_stock": True}},
    ]


@pytest.mark.parametrize("first", [1, 20, MAX_PAGE])
def test_size_asks_for_one_more_than_the_page_to_know_if_another_follows(first: int) -> None:
    assert product_search(first=first)["size"] == first + 1


@pytest.mark.parametrize(
    "values",
    [[1735689600000, "id-1"], [0.95, 1735689600000, "p-2"], ["kettle", "id-3"], [-1, 0]],
)
def test_a_cursor_round_trips(values: list[Any]) -> None:
    cursor = encode_cursor(values)

    assert "=" not in cursor  # safe in a URL without escaping
    assert decode_cursor(cursor, len(values)) == values


def test_a_cursor_becomes_search_after() -> None:
    cursor = encode_cursor([1735689600000, "id-9"])

    body = product_search(after=cursor)

    assert body["search_after"] == [1735689600000, "id-9"]


def test_a_relevance_cursor_carries_three_sort_values() -> None:
    cursor = encode_cursor([1.5, 1735689600000, "id-9"])

    body = product_search(search="mug", after=cursor)

    assert body["search_after"] == [1.5, 1735689600000, "id-9"]


def test_a_search_without_cursor_has_no_search_after() -> None:
    assert "search_after" not in product_search(after=None)
    assert "search_after" not in product_search(after="")


def _raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"first": 0}, "first"),
        ({"first": -1}, "first"),
        ({"first": MAX_PAGE + 1}, "first"),
        ({"filter": ProductFilter(min_price=-1)}, "filter.minPrice"),
        ({"filter": ProductFilter(max_price=-1)}, "filter.maxPrice"),
        ({"filter": ProductFilter(min_price=10, max_price=5)}, "filter.minPrice"),
        ({"after": "!!not base64!!"}, "after"),
        ({"after": _raw_cursor("{not json")}, "after"),
        ({"after": _raw_cursor('{"a": 1}')}, "after"),
        ({"after": _raw_cursor("[null, null]")}, "after"),
        ({"after": _raw_cursor('[[1], "id"]')}, "after"),
        ({"after": "\u00e9\u00e9\u00e9\u00e9"}, "after"),
        ({"after": encode_cursor([1, 2, "id"])}, "after"),
        ({"after": encode_cursor(["id"])}, "after"),
        ({"search": "x" * 201}, "search"),
    ],
    ids=[
        "first-0",
        "first-negative",
        "first-101",
        "negative-min-price",
        "negative-max-price",
        "min-above-max",
        "cursor-not-base64",
        "cursor-not-json",
        "cursor-not-a-list",
        "cursor-nulls",
        "cursor-nested",
        "cursor-non-ascii",
        "cursor-too-long",
        "cursor-too-short",
        "search-too-long",
    ],
)
def test_an_unusable_argument_is_refused_naming_it(
    arguments: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidQuery) as caught:
        product_search(**arguments)

    assert caught.value.argument == argument
    assert str(caught.value)


def test_a_cursor_of_another_sort_order_says_so() -> None:
    relevance_cursor = encode_cursor([1.5, 1735689600000, "id-9"])

    with pytest.raises(InvalidQuery, match="another sort order"):
        product_search(sort=ProductSort.PRICE_ASC, after=relevance_cursor)


def test_a_search_of_two_hundred_characters_is_allowed() -> None:
    body = product_search(search="x" * 200)

    text_match = body["query"]["bool"]["must"][0]["bool"]["should"][0]
    assert text_match["multi_match"]["query"] == "x" * 200


def test_suggestions_complete_a_name_prefix() -> None:
    assert product_suggest("  Ket ", size=5) == {
        "_source": ["id", "name", "sku"],
        "suggest": {
            "names": {
                "prefix": "Ket",
                "completion": {"field": "name_suggest", "size": 5},
            }
        },
    }


@pytest.mark.parametrize(
    ("prefix", "size", "argument"),
    [("", 10, "prefix"), ("   ", 10, "prefix"), ("x" * 101, 10, "prefix"), ("k", 0, "first")],
)
def test_a_suggestion_needs_a_prefix_and_a_page_size(prefix: str, size: int, argument: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        product_suggest(prefix, size)

    assert caught.value.argument == argument


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_cursor_with_a_number_json_cannot_hold_is_malformed(value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        decode_cursor(_raw_cursor(f'[{value}, "id-1"]'), 2)

    assert caught.value.argument == "after"


def test_facets_leave_out_their_own_filter_and_hits_get_every_filter() -> None:
    body = product_search(filter=ProductFilter(categories=("Kitchen",), in_stock=True), facets=True)

    category = {"terms": {"category": ["kitchen"]}}
    in_stock = {"term": {"in_stock": True}}
    assert body["query"] == {"bool": {"filter": [ACTIVE_ONLY]}}
    assert body["post_filter"] == {"bool": {"filter": [ACTIVE_ONLY, category, in_stock]}}
    aggs = body["aggs"]
    assert aggs["categories"]["filter"] == {"bool": {"filter": [ACTIVE_ONLY, in_stock]}}
    assert aggs["in_stock"]["filter"] == {"bool": {"filter": [ACTIVE_ONLY, category]}}
    assert aggs["tags"]["filter"] == {"bool": {"filter": [ACTIVE_ONLY, category, in_stock]}}
    assert aggs["price"]["aggs"]["values"]["range"]["ranges"][-1] == {"from": 10000}
