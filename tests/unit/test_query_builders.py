"""Query builders, compared as dicts: what each argument puts into the search body."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from domain.rules import MAX_SAFE_INTEGER
from readmodel.queries import (
    MATCH_NONE,
    MAX_CURSOR,
    MAX_PAGE,
    InvalidQuery,
    OrderFilter,
    OrderSort,
    ProductFilter,
    ProductSort,
    Scope,
    customer_search,
    decode_cursor,
    encode_cursor,
    order_search,
    position,
    product_search,
    product_suggest,
    stored_id,
    stored_sku,
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


def test_suggestions_complete_a_name_prefix_among_active_products_only() -> None:
    # Active only for every caller, staff too: what `products` shows by default.
    assert product_suggest("  Ket ", size=5) == {
        "_source": ["id", "name", "sku"],
        "query": {
            "bool": {
                "must": [{"match_bool_prefix": {"name": {"query": "Ket", "operator": "and"}}}],
                "filter": [{"term": {"status": "active"}}],
            }
        },
        "sort": [{"name_sort": "asc"}, {"id": "asc"}],
        "size": 5,
    }


def test_suggestions_for_a_caller_who_sees_active_products_filter_by_status_once() -> None:
    body = product_suggest("ket", scope=Scope(active_only=True))

    assert body["query"]["bool"]["filter"] == [{"term": {"status": "active"}}]


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


# What a hostile client sends: characters no store takes, and sizes no field holds.
HOSTILE_TEXT = {
    "nul": "a\x00b",
    "record-separator": "a\x1eb",
    "unit-separator": "a\x1fb",
    "noncharacter": "a\uffffb",
    "lone-surrogate": "a\ud800b",
    "10k": "x" * 10_000,
    "100k": "x" * 100_000,
}
UUID = "3f1c2a7e-9b4d-4e21-8c55-0a1b2c3d4e5f"


@pytest.mark.parametrize("text", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
def test_search_text_no_stored_text_could_hold_is_refused_naming_search(text: str) -> None:
    for search in (product_search, customer_search):
        with pytest.raises(InvalidQuery) as caught:
            search(search=text)

        assert caught.value.argument == "search"


@pytest.mark.parametrize("text", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
def test_a_prefix_no_name_could_start_with_is_refused_naming_prefix(text: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        product_suggest(text)

    assert caught.value.argument == "prefix"
    assert "\ud800" not in str(caught.value)  # the message itself can be sent


def test_search_text_is_taken_in_the_form_text_is_stored_in() -> None:
    body = product_search(search=" cafe\u0301\tkettle \U0001f375\n")

    text_match = body["query"]["bool"]["must"][0]["bool"]["should"][0]
    # NFC, trimmed; a tab inside is a space to the analyzer, and emoji are text.
    assert text_match["multi_match"]["query"] == "caf\u00e9\tkettle \U0001f375"


def test_a_prefix_of_emoji_is_text() -> None:
    match = product_suggest("\U0001f375 t")["query"]["bool"]["must"][0]["match_bool_prefix"]
    assert match["name"]["query"] == "\U0001f375 t"


def test_categories_are_matched_in_their_stored_form_once_each() -> None:
    body = product_search(filter=ProductFilter(categories=(" Kitchen ", "KITCHEN", "Cafe\u0301")))

    assert filters_of(body) == [ACTIVE_ONLY, {"terms": {"category": ["kitchen", "caf\u00e9"]}}]


def test_a_category_no_product_could_have_is_left_out_and_alone_matches_nothing() -> None:
    hostile = tuple(HOSTILE_TEXT.values())

    some = product_search(filter=ProductFilter(categories=(*hostile, "garden")))
    none = product_search(filter=ProductFilter(categories=hostile))

    assert filters_of(some) == [ACTIVE_ONLY, {"terms": {"category": ["garden"]}}]
    assert filters_of(none) == [ACTIVE_ONLY, MATCH_NONE]


def test_an_empty_category_is_one_a_product_can_have() -> None:
    body = product_search(filter=ProductFilter(categories=("",)))

    assert filters_of(body) == [ACTIVE_ONLY, {"terms": {"category": [""]}}]


@pytest.mark.parametrize("tag", ["", *HOSTILE_TEXT.values()], ids=["empty", *HOSTILE_TEXT])
def test_a_tag_no_product_could_have_makes_the_filter_match_nothing(tag: str) -> None:
    body = product_search(filter=ProductFilter(tags=("steel", tag)), facets=True)

    assert body["post_filter"] == {"bool": {"filter": [ACTIVE_ONLY, MATCH_NONE]}}
    # The tags facet still counts without its own filter.
    assert body["aggs"]["tags"]["filter"] == {"bool": {"filter": [ACTIVE_ONLY]}}


@pytest.mark.parametrize(
    "customer_id",
    ["", *HOSTILE_TEXT.values(), "a b", "x" * 37],
    ids=["empty", *HOSTILE_TEXT, "space", "37"],
)
def test_orders_of_an_id_no_customer_could_have_match_nothing(customer_id: str) -> None:
    body = order_search(filter=OrderFilter(customer_id=customer_id))

    assert filters_of(body) == [MATCH_NONE]


def test_orders_of_a_customer_filter_on_the_id() -> None:
    body = order_search(filter=OrderFilter(customer_id=UUID))

    assert filters_of(body) == [{"term": {"customer.id": UUID}}]


def test_placed_times_are_compared_as_instants_not_as_text() -> None:
    # 10:00 at +02:00 is 08:00 UTC: before 09:00 UTC, though "10" > "09".
    after, before = "2026-01-01T10:00:00+02:00", "2026-01-01T09:00:00+00:00"

    body = order_search(filter=OrderFilter(placed_after=after, placed_before=before))

    assert filters_of(body) == [{"range": {"placed_at": {"gte": after, "lt": before}}}]


@pytest.mark.parametrize(
    ("placed_after", "placed_before", "argument"),
    [
        ("2026-01-01T10:00:00", None, "filter.placedAfter"),
        (None, "2026-01-01T10:00:00", "filter.placedBefore"),
        ("not a time", None, "filter.placedAfter"),
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", "filter.placedAfter"),
    ],
    ids=["after-without-offset", "before-without-offset", "not-a-time", "after-not-before"],
)
def test_an_unusable_placed_time_is_refused_naming_it(
    placed_after: str | None, placed_before: str | None, argument: str
) -> None:
    with pytest.raises(InvalidQuery) as caught:
        order_search(filter=OrderFilter(placed_after=placed_after, placed_before=placed_before))

    assert caught.value.argument == argument


@pytest.mark.parametrize("value", ["0", "42", "007", str(MAX_SAFE_INTEGER)])
def test_a_position_is_digits_up_to_the_largest_long(value: str) -> None:
    assert position(value, "after") == int(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-1",
        " 1",
        "1 ",
        "+1",
        "1_000",
        "\u0661",
        "1e3",
        str(MAX_SAFE_INTEGER + 1),
        "9" * 5000,
        *HOSTILE_TEXT.values(),
    ],
)
def test_anything_else_is_no_position_and_is_refused_naming_the_argument(value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        position(value, "consistencyToken")

    assert caught.value.argument == "consistencyToken"


def test_an_id_is_looked_up_as_sent_when_the_write_side_could_have_made_it() -> None:
    assert stored_id(UUID) == UUID
    assert stored_id("a") == "a"


@pytest.mark.parametrize("value", ["", " a", "a b", "x" * 37, "\U0001f375", *HOSTILE_TEXT.values()])
def test_an_id_no_object_could_have_is_not_looked_up(value: str) -> None:
    assert stored_id(value) is None


def test_a_sku_is_looked_up_as_stored_and_one_no_product_could_have_is_not() -> None:
    assert stored_sku(" k-1 ") == "K-1"
    assert stored_sku("") is None
    for hostile in HOSTILE_TEXT.values():
        assert stored_sku(hostile) is None


@pytest.mark.parametrize(
    ("cursor", "sort"),
    [
        ("A" * (MAX_CURSOR + 1), ProductSort.NEWEST),
        ("\ud800", ProductSort.NEWEST),
        (_raw_cursor('[1, "\\ud800"]'), ProductSort.NEWEST),
        (_raw_cursor('[1e999, "id-1"]'), ProductSort.PRICE_ASC),
        (_raw_cursor('[true, "id-1"]'), ProductSort.PRICE_ASC),
        (_raw_cursor('["cheap", "id-1"]'), ProductSort.PRICE_ASC),
        (_raw_cursor('[1.5, "id-1"]'), ProductSort.PRICE_ASC),
        (_raw_cursor(f'[{2**63}, "id-1"]'), ProductSort.NEWEST),
        (_raw_cursor("[1, 2]"), ProductSort.NEWEST),
        (_raw_cursor('[1, "kettle"]'), ProductSort.NAME),
        (_raw_cursor('[1e39, 1, "id-1"]'), ProductSort.RELEVANCE),
        (encode_cursor([1, "z" * 5000]), ProductSort.NEWEST),
        (encode_cursor([1, "a b"]), ProductSort.NEWEST),
    ],
    ids=[
        "too-long",
        "lone-surrogate-itself",
        "lone-surrogate-inside",
        "infinite",
        "boolean",
        "text-for-a-price",
        "fraction-for-a-price",
        "beyond-a-long",
        "number-for-the-id",
        "number-for-a-name",
        "score-beyond-a-float",
        "overlong-id",
        "no-id",
    ],
)
def test_a_cursor_no_page_could_have_returned_is_refused_naming_after(
    cursor: str, sort: ProductSort
) -> None:
    with pytest.raises(InvalidQuery) as caught:
        product_search(search="kettle", sort=sort, after=cursor)

    assert caught.value.argument == "after"


def test_a_cursor_of_another_query_is_refused_for_orders_and_customers_too() -> None:
    name_cursor = encode_cursor(["ada", "id-1"])

    with pytest.raises(InvalidQuery):
        order_search(sort=OrderSort.TOTAL_ASC, after=name_cursor)
    assert customer_search(after=name_cursor)["search_after"] == ["ada", "id-1"]
