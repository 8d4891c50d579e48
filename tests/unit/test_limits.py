"""The limits' one pass (api/limits.py) and the deadline: what they count, that a
fragment is measured once, and the codes a refused or overdue operation gets.
Nothing here reads Elasticsearch: the reads that run are introspection,
`__typename`, or a consistency wait the test holds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from graphql import get_introspection_query, parse
from strawberry.types import ExecutionResult

from api import limits
from api.context import Context
from api.limits import LIST_SIZE, PAGE_SIZE_CAP, Measures, measure_document, measure_operation
from api.schema import LIMITS, build_schema
from api.settings import Settings, SettingsError

SCHEMA = build_schema()
GRAPHQL_SCHEMA = SCHEMA._schema

# Only an exponential blow-up could come near this; it measures no speed.
HANG = 5.0


def measured(query: str) -> Measures:
    found = measure_operation(GRAPHQL_SCHEMA, parse(query, max_tokens=None), None)
    assert found is not None
    return found


def bomb(levels: int, leaf: str = "a: readModel { indexedUpTo }") -> str:
    """The issue's fragment bomb: each fragment spreads the next one twice."""
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    return " ".join(["query { ...F0 }", *fragments, f"fragment F{levels} on Query {{ {leaf} }}"])


class HeldReader:
    """A reader whose consistency wait never ends before the deadline does."""

    async def wait_for(self, *_args: Any) -> None:
        await asyncio.sleep(60)


class HeldApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reader = HeldReader()


async def run(query: str, app: Any = None) -> ExecutionResult:
    context = Context(app=app or HeldApp(Settings()), request=None)
    return await SCHEMA.execute(query, context_value=context)


def codes(result: ExecutionResult) -> list[str]:
    return [(error.extensions or {}).get("code", "") for error in result.errors or ()]


# --- what is counted ---


def test_depth_counts_the_levels_below_the_root_fields() -> None:
    assert measured("{ readModel { indexedUpTo } }").depth == 1
    assert measured("{ product(id: 1) { price { amount } } }").depth == 2


def test_aliases_and_fields_are_counted_one_by_one() -> None:
    found = measured("{ a: __typename b: __typename readModel { c: indexedUpTo checkedAt } }")

    assert found.aliases == 3
    assert found.fields == 5


def test_a_field_costs_one_plus_what_it_selects() -> None:
    assert measured("{ __typename }").cost == 1
    assert measured("{ product(id: 1) { id price { amount currency } } }").cost == 1 + 1 + 3


def test_a_connection_multiplies_by_its_first_and_its_edges_are_that_page() -> None:
    query = "{ products(first: 7) { totalCount edges { cursor node { id sku } } } }"

    # products: 1 + 7 * (totalCount 1 + edges (1 + 1 * (cursor 1 + node 3)))
    assert measured(query).cost == 1 + 7 * (1 + 1 + 1 + 3)


def test_a_left_out_first_counts_as_its_default_and_a_variable_as_the_largest_page() -> None:
    selection = "{ edges { node { id } } }"
    left_out = measured("{ products " + selection + " }").cost
    variable = measured("query($n: Int!) { products(first: $n) " + selection + " }").cost

    assert left_out == 1 + 20 * 3  # products' `first` defaults to 20
    assert variable == 1 + PAGE_SIZE_CAP * 3


def test_a_list_without_first_counts_as_list_size_items_and_nested_lists_multiply() -> None:
    query = "{ readModel { projections { name } } }"
    nested = "{ products(first: 2) { facets { tags { value count } } } }"

    assert measured(query).cost == 1 + (1 + LIST_SIZE * 1)
    assert measured(nested).cost == 1 + 2 * (1 + (1 + LIST_SIZE * 2))


def test_a_fragment_counts_at_every_spread() -> None:
    once = measured("{ ...R } fragment R on Query { r: readModel { indexedUpTo } }")
    twice = measured("{ ...R ...R } fragment R on Query { r: readModel { indexedUpTo } }")

    assert twice == Measures(
        depth=once.depth, aliases=2 * once.aliases, fields=2 * once.fields, cost=2 * once.cost
    )


def test_inline_fragments_count_in_their_place() -> None:
    query = "{ product(id: 1) { ... on Product { a: id price { amount } } } }"

    assert measured(query) == Measures(depth=2, aliases=1, fields=4, cost=4)


def test_every_operation_of_a_document_is_measured_apart() -> None:
    document = parse("query A { __typename } query B { a: __typename b: __typename }")

    found = measure_document(GRAPHQL_SCHEMA, document)

    assert found["A"].aliases == 0
    assert found["B"].aliases == 2
    assert measure_operation(GRAPHQL_SCHEMA, document, "B") == found["B"]


# --- fragments are measured once ---


@pytest.mark.parametrize("levels", [10, 20, 30])
def test_the_fragment_bomb_is_measured_exactly_with_each_fragment_once(
    levels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = 0
    walk = limits._Measurer._selections

    def counting(self: Any, *args: Any) -> Measures:
        nonlocal walks
        walks += 1
        return walk(self, *args)

    monkeypatch.setattr(limits._Measurer, "_selections", counting)

    found = measured(bomb(levels))

    assert found == Measures(depth=1, aliases=2**levels, fields=2**levels * 2, cost=2**levels * 2)
    # One walk per fragment, the operation and the readModel selection: linear.
    assert walks == levels + 3


def test_counts_saturate_instead_of_growing_without_bound() -> None:
    found = measured(bomb(600))

    assert found.aliases == found.fields == found.cost == limits._SATURATED


def test_a_long_chain_of_fragments_is_measured_without_exhausting_the_stack() -> None:
    chain = " ".join(f"fragment F{i} on Query {{ f{i} {{ ...F{i + 1} }} }}" for i in range(2000))
    query = "query { ...F0 } " + chain + " fragment F2000 on Query { x }"

    assert measured(query).depth == 2000


def test_fragment_cycles_measure_as_nothing_and_are_refused_by_graphql_core() -> None:
    query = "query { ...A } fragment A on Query { a: __typename ...B } fragment B on Query { ...A }"

    assert measured(query).aliases == 1  # B's spread of A closes the cycle: not counted


async def test_a_fragment_cycle_is_refused_as_a_validation_error() -> None:
    result = await run("query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }")

    assert result.data is None
    assert "GRAPHQL_VALIDATION_FAILED" in codes(result)


# --- refusals through the schema ---


@pytest.mark.parametrize("levels", [10, 20, 30])
async def test_the_fragment_bomb_is_refused_for_its_aliases_fields_and_cost(levels: int) -> None:
    started = time.monotonic()

    result = await run(bomb(levels))

    assert time.monotonic() - started < HANG
    assert result.data is None
    assert {"TOO_MANY_ALIASES", "TOO_MANY_FIELDS"} <= set(codes(result))
    assert ("QUERY_TOO_COMPLEX" in codes(result)) == (2**levels * 2 > LIMITS["max_cost"])
    assert any(f"{2**levels:,} aliases" in error.message for error in result.errors or ())


@pytest.mark.parametrize("levels", [10, 20, 30])
async def test_the_fragment_bomb_without_an_alias_is_refused_too(levels: int) -> None:
    started = time.monotonic()

    result = await run(bomb(levels, leaf="readModel { indexedUpTo }"))

    assert time.monotonic() - started < HANG
    assert result.data is None
    assert "TOO_MANY_FIELDS" in codes(result)
    assert "TOO_MANY_ALIASES" not in codes(result)


async def test_a_query_too_deep_is_refused_with_its_code() -> None:
    opening = "".join(f"f{i} {{ " for i in range(LIMITS["max_depth"] + 1))
    result = await run("query Deep { " + opening + "x" + " }" * (LIMITS["max_depth"] + 1) + " }")

    assert result.data is None
    assert "QUERY_TOO_DEEP" in codes(result)
    assert any("Operation 'Deep'" in error.message for error in result.errors or ())


async def test_too_many_fields_are_refused_with_their_code() -> None:
    result = await run("{ " + "__typename " * (LIMITS["max_fields"] + 1) + "}")

    assert result.data is None
    assert codes(result) == ["TOO_MANY_FIELDS"]


async def test_a_document_past_the_field_limit_is_refused_before_other_rules_compare_its_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # graphql-core's OverlappingFieldsCanBeMergedRule is quadratic in alike fields.
    from graphql.validation.rules import overlapping_fields_can_be_merged as overlapping

    def never(*_args: Any) -> Any:
        raise AssertionError("compared fields of a document already refused")

    monkeypatch.setattr(overlapping, "find_conflicts_within_selection_set", never)
    query = "{ " + " ".join(f'product(id: "{i}") {{ id }}' for i in range(260)) + " }"

    result = await run(query)

    assert result.data is None
    assert codes(result) == ["TOO_MANY_FIELDS"]


async def test_a_query_too_costly_is_refused_before_anything_runs() -> None:
    lines = "lines { sku productName quantity unitPrice { amount currency } }"
    query = (
        "{ "
        + " ".join(
            f"o{i}: orders(first: 100) {{ edges {{ node {{ {lines} }} }} }}" for i in range(20)
        )
        + " }"
    )

    result = await run(query)  # would need Elasticsearch if it ran

    assert result.data is None
    assert codes(result) == ["QUERY_TOO_COMPLEX"]
    assert measured(query).cost > LIMITS["max_cost"]


def with_tokens(count: int) -> str:
    """A document of exactly `count` tokens that parses, then fails validation
    (no field `nope`): `{ nope ( a : [` and `] ) }` are 9, the strings the rest."""
    return "{ nope(a: [" + ' "x"' * (count - 9) + " ]) }"


async def test_the_token_limit_has_its_own_code_from_the_first_token_past_it() -> None:
    at_limit = await run(with_tokens(LIMITS["max_tokens"]))
    past_limit = await run(with_tokens(LIMITS["max_tokens"] + 1))

    assert codes(at_limit) == ["GRAPHQL_VALIDATION_FAILED"]  # parsed, then refused for `nope`
    assert past_limit.data is None
    assert codes(past_limit) == ["TOO_MANY_TOKENS"]


# --- introspection ---


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "descriptions": True,
            "specified_by_url": True,
            "directive_is_repeatable": True,
            "schema_description": True,
            "input_value_deprecation": True,
        },
    ],
    ids=["default", "every-option"],
)
async def test_graphiqls_introspection_query_passes_the_limits(options: dict[str, bool]) -> None:
    result = await run(get_introspection_query(**options))

    assert result.errors is None
    assert result.data is not None
    assert any(t["name"] == "Product" for t in result.data["__schema"]["types"])


async def test_introspection_cannot_be_amplified_past_the_cost_limit() -> None:
    query = "{ __schema { types { fields { args { type { fields { args { name } } } } } } } }"

    result = await run(query)

    assert result.data is None
    assert codes(result) == ["QUERY_TOO_COMPLEX"]


# --- the cost is exposed ---


async def test_the_cost_of_a_query_is_reported_in_its_extensions() -> None:
    result = await run("{ a: __typename b: __typename }")

    assert result.errors is None
    assert result.extensions == {"cost": {"requested": 2, "limit": LIMITS["max_cost"]}}


async def test_the_operation_that_runs_is_the_one_whose_cost_is_reported() -> None:
    context = Context(app=HeldApp(Settings()), request=None)
    result = await SCHEMA.execute(
        "query A { __typename } query B { a: __typename b: __typename c: __typename }",
        context_value=context,
        operation_name="B",
    )

    assert result.extensions == {"cost": {"requested": 3, "limit": LIMITS["max_cost"]}}


# --- the deadline ---

HELD_QUERY = '{ product(id: "p-1", consistencyToken: "999999") { id } }'


async def test_an_operation_past_its_deadline_answers_deadline_exceeded_with_no_data() -> None:
    app = HeldApp(Settings(request_timeout=0.05, consistency_timeout=30))
    started = time.monotonic()

    result = await run(HELD_QUERY, app)

    assert time.monotonic() - started < HANG
    assert result.data is None
    assert codes(result) == ["DEADLINE_EXCEEDED"]
    assert "0.05 s" in (result.errors or [])[0].message


async def test_an_operation_over_a_websocket_gets_the_same_deadline() -> None:
    app = HeldApp(Settings(request_timeout=0.05, consistency_timeout=30))
    context = Context(app=app, request=None)

    stream = await SCHEMA.stream(HELD_QUERY, context_value=context)
    results = [result async for result in stream]

    assert len(results) == 1
    assert results[0].data is None
    assert codes(results[0]) == ["DEADLINE_EXCEEDED"]


def test_the_deadline_must_be_above_zero() -> None:
    with pytest.raises(SettingsError, match="REQUEST_TIMEOUT"):
        Settings(request_timeout=0)


def test_the_deadline_is_read_from_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUEST_TIMEOUT", "2.5")

    assert Settings.from_env().request_timeout == 2.5
    assert Settings().request_timeout > Settings().consistency_timeout


def test_the_cost_report_reads_the_measures_the_validation_rule_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from graphql import validate

    from api.limits_rule import Limits, limits_rule

    document = parse("query Q { products(first: 7) { totalCount } } query R { __typename }")
    assert validate(GRAPHQL_SCHEMA, document, [limits_rule(Limits())]) == []

    def walk_again(*_: Any) -> None:
        raise AssertionError("the document was measured a second time")

    monkeypatch.setattr(limits, "_Measurer", walk_again)
    measured = measure_operation(GRAPHQL_SCHEMA, document, "Q")

    assert measured is not None and measured.cost > 7
