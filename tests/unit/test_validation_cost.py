"""No document within the token limit makes validation itself expensive.

For each shape that makes one of graphql-core's rules superlinear (most of all
OverlappingFieldsCanBeMergedRule, which compares alike fields and spread
fragments pairwise), two documents are built: the largest within 5,000 tokens
and the largest the limits let through. Each is validated with every rule the
schema runs; it must be refused by the limits with its code, or pass them and
be validated in full, and either way quickly.

Measured on the loaded 2-core development machine (whole validation, every
rule): before the repetition and fragment limits, the worst documents within
the other limits took 0.35 s (250 alike fields), 0.7-0.9 s (250 inline
fragments of one field), 1.1-1.3 s (250-500 fragments sharing a field) and
0.4 s (500 fragments sharing nothing); now the worst refused document takes
10 ms and the worst validated in full about 90 ms (831 operations spreading
one fragment, linear), the pairwise shapes a few ms. The deadline below only
detects a blow-up; it measures no speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from graphql import GraphQLError, get_introspection_query, parse, specified_rules, validate
from graphql.language import Lexer, Source, TokenKind
from strawberry.schema.schema import validate_document

from api.schema import _LIMIT_RULES, LIMITS, schema

GRAPHQL_SCHEMA = schema._schema
RULES = (*specified_rules, *_LIMIT_RULES)  # what the schema validates with
LIMIT_CODES = {
    "QUERY_TOO_DEEP",
    "TOO_MANY_ALIASES",
    "TOO_MANY_FIELDS",
    "QUERY_TOO_COMPLEX",
    "TOO_MANY_REPEATED_FIELDS",
    "DOCUMENT_TOO_COMPLEX",
}
BLOW_UP = 2.0  # seconds; only an explosion of work comes near it

LEAF = "readModel { indexedUpTo }"


def fragments(count: int, body: Callable[[int], str], on: str = "Query") -> str:
    return " ".join(f"fragment F{i} on {on} {{ {body(i)} }}" for i in range(count))


def spreads(count: int) -> str:
    return " ".join(f"...F{i}" for i in range(count))


SHAPES: dict[str, Callable[[int], str]] = {
    "repeated fields": lambda n: "{ " + f"{LEAF} " * n + "}",
    "inline fragments of one field": lambda n: "{ " + f"... on Query {{ {LEAF} }} " * n + "}",
    "fragments sharing a field": lambda n: f"{{ {spreads(n)} }} " + fragments(n, lambda _: LEAF),
    "fragments sharing nothing": lambda n: f"{{ {spreads(n)} }} " + fragments(n, lambda _: ""),
    "unused fragments": lambda n: "{ __typename } " + fragments(n, lambda _: LEAF),
    "operations": lambda n: (
        " ".join(f"query Q{i} {{ ...F0 }}" for i in range(n)) + " " + fragments(1, lambda _: LEAF)
    ),
    "operations over a chain of fragments": lambda n: (
        " ".join(f"query Q{i} {{ ...F0 }}" for i in range(n))
        + " "
        + fragments(min(n, 99), lambda i: f"...F{i + 1}" if i < min(n, 99) - 1 else "__typename")
    ),
    "variables": lambda n: (
        "query("
        + " ".join(f"$v{i}: Int" for i in range(n))
        + ") { products(first: $v0) { totalCount } }"
    ),
    "variables each used": lambda n: (
        "query("
        + " ".join(f"$v{i}: Boolean!" for i in range(n))
        + ") { "
        + " ".join(f"__typename @skip(if: $v{i})" for i in range(n))
        + " }"
    ),
    "arguments": lambda n: (
        "{ products(" + " ".join(f"first: {i}" for i in range(n)) + ") { totalCount } }"
    ),
    "repeated fields with arguments": lambda n: (
        "{ "
        + " ".join(
            "products(" + " ".join(f"first: {i}" for i in range(20)) + ") { totalCount }"
            for _ in range(n)
        )
        + " }"
    ),
    "directives": lambda n: "{ __typename " + "@skip(if: false) " * n + "}",
    "a fan of fragments spreading the next": lambda n: (
        "{ ...F0 } "
        + fragments(n, lambda i: " ".join(f"...F{i + 1}" for _ in range(n)))
        + f" fragment F{n} on Query {{ {LEAF} }}"
    ),
    "nested repetition through fragments": lambda n: (
        "{ "
        + "readModel { ...F0 } " * 3
        + "} "
        + fragments(1, lambda _: "projections { ...F1 } " * 3, on="ReadModel")
        + " fragment F1 on ProjectionStatus { "
        + "name " * n
        + "}"
    ),
    "fragments that each spread a common few": lambda n: (
        f"{{ {spreads(n)} }} "
        + fragments(n, lambda _: " ".join(f"...G{j}" for j in range(5)))
        + " "
        + " ".join(f"fragment G{j} on Query {{ {LEAF} }}" for j in range(5))
    ),
    "inline fragments nested": lambda n: (
        "{ " + "... on Query { " * n + "__typename" + " }" * n + " }"
    ),
}


def tokens(text: str) -> int:
    lexer, count = Lexer(Source(text)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def limit_codes(text: str) -> set[str]:
    """The limits' codes for a document, with the limits' rule alone."""
    errors = validate(GRAPHQL_SCHEMA, parse(text, max_tokens=None), _LIMIT_RULES)
    return {str((e.extensions or {}).get("code")) for e in errors} & LIMIT_CODES


def largest(shape: Callable[[int], str], fits: Callable[[str], bool]) -> str:
    low, high = 1, 2500
    while low < high:
        middle = (low + high + 1) // 2
        if fits(shape(middle)):
            low = middle
        else:
            high = middle - 1
    return shape(low)


def within_tokens(text: str) -> bool:
    try:
        parse(text, max_tokens=LIMITS["max_tokens"])
    except GraphQLError:
        return False
    return True


def passes_limits(text: str) -> bool:
    return within_tokens(text) and not limit_codes(text)


def validated(text: str) -> tuple[list[GraphQLError], float]:
    document = parse(text, max_tokens=LIMITS["max_tokens"])
    started = time.perf_counter()
    errors = validate_document(GRAPHQL_SCHEMA, document, RULES)
    return errors, time.perf_counter() - started


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_largest_document_of_each_shape_is_refused_or_validated_without_blowing_up(
    shape: str,
) -> None:
    text = largest(SHAPES[shape], within_tokens)

    errors, seconds = validated(text)

    assert tokens(text) <= LIMITS["max_tokens"]
    codes = {str((e.extensions or {}).get("code")) for e in errors}
    assert (codes & LIMIT_CODES) == limit_codes(text)  # refused exactly as the limits say
    assert seconds < BLOW_UP, f"{shape}: {seconds:.2f} s"


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_largest_document_of_each_shape_the_limits_let_through_validates_in_full_quickly(
    shape: str,
) -> None:
    text = largest(SHAPES[shape], passes_limits)

    errors, seconds = validated(text)

    assert not {str((e.extensions or {}).get("code")) for e in errors} & LIMIT_CODES
    assert seconds < BLOW_UP, f"{shape}: {seconds:.2f} s"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{ " + f"{LEAF} " * 250 + "}", "TOO_MANY_REPEATED_FIELDS"),
        ("{ " + f"... on Query {{ {LEAF} }} " * 240 + "}", "TOO_MANY_REPEATED_FIELDS"),
        (f"{{ {spreads(200)} }} " + fragments(200, lambda _: LEAF), "DOCUMENT_TOO_COMPLEX"),
        (
            "{ __typename } "
            + fragments(30, lambda i: f"...F{i + 1} ...F{i + 1}")
            + f" fragment F30 on Query {{ {LEAF} }}",
            "TOO_MANY_FIELDS",
        ),
    ],
    ids=["249-alike-fields", "240-inline-fragments", "200-fragments", "an-unused-fragment-bomb"],
)
def test_the_measured_slow_documents_are_refused_before_graphql_core_compares_their_fields(
    text: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphql.validation.rules import overlapping_fields_can_be_merged as overlapping

    def never(*_args: object) -> object:
        raise AssertionError("compared the fields of a refused document")

    monkeypatch.setattr(overlapping, "find_conflicts_within_selection_set", never)

    errors, _ = validated(text)

    assert {(e.extensions or {}).get("code") for e in errors} == {code}


def test_ten_fields_may_share_a_response_key_and_the_eleventh_is_refused() -> None:
    at_limit = (
        "{ "
        + "readModel { indexedUpTo } " * 5
        + "} fragment R on Query { "
        + "readModel { checkedAt } " * 5
        + "}"
    )

    assert limit_codes("{ ...R " + at_limit[2:]) == set()
    assert limit_codes("{ ...R __typename readModel { projections { name } } " + at_limit[2:]) == {
        "TOO_MANY_REPEATED_FIELDS"
    }


def test_repetition_multiplies_down_the_response_path() -> None:
    # 3 `readModel`s, each with 4 `projections`: 12 fields end at readModel.projections.
    three_by_four = "{ " + ("readModel { " + "projections { name } " * 4 + "} ") * 3 + "}"
    two_by_four = "{ " + ("readModel { " + "projections { name } " * 4 + "} ") * 2 + "}"

    assert limit_codes(three_by_four) == {"TOO_MANY_REPEATED_FIELDS"}
    assert limit_codes(two_by_four) == set()


def test_a_hundred_fragments_are_allowed_and_the_hundred_and_first_is_refused() -> None:
    allowed = f"{{ {spreads(100)} }} " + fragments(100, lambda _: "")
    refused = f"{{ {spreads(101)} }} " + fragments(101, lambda _: "")

    assert limit_codes(allowed) == set()
    assert limit_codes(refused) == {"DOCUMENT_TOO_COMPLEX"}


def test_graphiqls_introspection_query_passes_every_limit_and_rule() -> None:
    for options in (
        {},
        {"descriptions": True, "input_value_deprecation": True, "specified_by_url": True},
    ):
        errors, _ = validated(get_introspection_query(**options))  # type: ignore[arg-type]

        assert errors == []
