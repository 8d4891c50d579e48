"""Operations for the schema fuzz test, and what every answer to one must be.

hypothesis-graphql generates valid queries and mutations from `schema.graphql`;
the scalars are ours, so that the values are the ones a careless or hostile
client sends: control characters, NUL, lone surrogates, long text, emoji, the
edges of a 32-bit Int, ids and skus that exist. A lone surrogate cannot stand
in a GraphQL string literal, only in JSON, so some operations carry their text
in variables (`as_variables`) and the rest inline.

Each operation also names its caller (`CALLERS`): mostly an admin, so that the
generated operations reach every resolver and command past the access rules, and
sometimes staff, a registered customer, a customer not yet registered, or nobody,
so that the policy's own paths (refusals, row filters, masked fields) are fuzzed
too. A refusal (FORBIDDEN, UNAUTHENTICATED) is a proper answer like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes

__all__ = [
    "CALLERS",
    "Known",
    "Operation",
    "answer_problems",
    "operations",
]

SCHEMA = graphql.build_schema((Path(__file__).resolve().parents[2] / "schema.graphql").read_text())

INT_EDGES = [0, 1, -1, 2, 100, 2**31 - 1, -(2**31), 2**31 - 2, 2**30, 1_000_000, 2**16]

# Each one is a class of text some layer chokes on: the characters Elasticsearch's
# completion field reserves, NUL (PostgreSQL refuses it), C1 and bidi controls,
# non-characters, lone surrogates, astral and joined emoji, SQL and JSON metacharacters.
HOSTILE_PIECES = [
    "\x00",
    "\x1e",
    "\x1f",
    "\x07",
    "\x7f",
    "\x85",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\uffff",
    "\ufffe",
    "\ud800",
    "\udfff",
    "\U0001f600",
    "\U0001f3f3\ufe0f\u200d\U0001f308",
    "e\u0301",
    "\r\n",
    "\t",
    "'; drop table events; --",
    '{"a": [1, "\\u0000"]}',
    "%s%n",
    "..\\..\\",
    "*",
    "?",
    "~",
    "\\",
]

TOKEN_TEXT = ["0", "-1", "1", "999999999999", "99999999999999999999999", "1e9", "NaN", " 7 "]

_LONG = st.sampled_from([1_000, 10_000, 100_000])

# Who sends an operation: mostly an admin (the first, too: what a failure shrinks to).
# Hypothesis draws the later entries less often (200 examples: staff about 4 times).
# "customer" is a registered customer; "newcomer" a customer token whose customer does
# not exist yet (registerCustomer binds it); the test maps each to its Authorization.
CALLERS = ("admin",) * 5 + ("anonymous", "customer", "newcomer", "staff")


@dataclass(frozen=True)
class Known:
    """Values that exist on the server, so mutations reach past NotFound."""

    products: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    skus: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [*self.products, *self.customers, *self.orders]

    @property
    def texts(self) -> list[str]:
        return [*self.skus, *self.emails, *self.tokens]


def _salted() -> st.SearchStrategy[str]:
    """Readable text with hostile characters in it, as a careless import would send."""
    return st.tuples(
        st.sampled_from(["Fuzz ", "fuzz-", ""]),
        st.lists(st.sampled_from(HOSTILE_PIECES), min_size=1, max_size=3),
    ).map(lambda parts: parts[0] + "".join(parts[1]))


def _texts(known: Known) -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.text(max_size=12),
        st.text(st.characters(codec=None), max_size=6),
    )
    mixed = st.lists(piece, max_size=6).map("".join)
    salted = _salted()
    long = st.tuples(st.sampled_from(["x", "é", "\U0001f600", "\x00", "a "]), _LONG).map(
        lambda pair: pair[0] * (pair[1] // len(pair[0]))
    )
    plain = st.sampled_from(["", "EUR", "usd", "a", "Widget", "fuzz@example.com", "X-1"])
    known_values = st.sampled_from(known.texts or [""])
    return st.one_of(plain, known_values, salted, mixed, salted, st.sampled_from(TOKEN_TEXT), long)


def _ids(known: Known) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known.ids or ["0"]),
        st.sampled_from(TOKEN_TEXT),
        _texts(known),
    )


def _datetimes() -> st.SearchStrategy[str]:
    aware = st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, None]),
    ).map(datetime.isoformat)
    broken = st.sampled_from(["", "2024-13-45", "yesterday", "2024-01-01T25:00:00", "\x00"])
    edges = st.sampled_from(
        [
            datetime.min.isoformat(),
            datetime.max.isoformat(),
            (datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)).isoformat(),
        ]
    )
    return st.one_of(aware, broken, edges)


def scalars(known: Known) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    ints = st.one_of(
        st.sampled_from(INT_EDGES), st.integers(1, 10), st.integers(-(2**31), 2**31 - 1)
    )
    return {
        "String": _texts(known).map(nodes.String),
        "ID": _ids(known).map(nodes.String),
        "Int": ints.map(nodes.Int),
        "DateTime": _datetimes().map(nodes.String),
    }


def _weighted(
    likely: st.SearchStrategy[Any], rest: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """`likely` three times in four."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda pick: likely if pick else rest)


def _mostly_null(values: st.SearchStrategy[str]) -> st.SearchStrategy[graphql.ValueNode]:
    # Null four times in five: an operation has several such arguments, and one bad
    # value stops its field before it reads anything.
    value = values.map(nodes.String)
    return st.sampled_from([False, False, False, False, True]).flatmap(
        lambda given: value if given else st.just(graphql.NullValueNode())
    )


def _by_field(known: Known) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Values for the fields whose format a mutation checks first: with only hostile
    text there, nearly every mutation would stop at INVALID_INPUT and no hostile name,
    description or tag would ever reach the write database, the feed and the index."""
    texts = _texts(known)
    skus = st.from_regex(r"[A-Z0-9][A-Z0-9._-]{0,12}", fullmatch=True)
    tokens = st.one_of(st.sampled_from(known.tokens or ["0"]), st.sampled_from(TOKEN_TEXT), texts)

    def ids(existing: list[str]) -> st.SearchStrategy[graphql.ValueNode]:
        return _weighted(st.sampled_from(existing or ["0"]), _ids(known)).map(nodes.String)

    return {
        # A name is what Elasticsearch's completion field takes: mostly hostile.
        "name": _weighted(_salted(), texts).map(nodes.String),
        "productId": ids(known.products),
        "customerId": ids(known.customers),
        "orderId": ids(known.orders),
        "sku": st.one_of(st.sampled_from(known.skus or ["X-1"]), skus, texts).map(nodes.String),
        "currency": st.one_of(st.sampled_from(["EUR", "USD", "JPY", "eur", "XXX"]), texts).map(
            nodes.String
        ),
        "email": st.one_of(
            st.emails(),
            st.sampled_from(known.emails or ["a@example.com"]),
            texts.map(lambda local: f"{local}@example.com"),
            texts,
        ).map(nodes.String),
        # Mostly none: a wrong token or cursor stops the field before it reads anything.
        "consistencyToken": _mostly_null(tokens),
        "after": _mostly_null(texts),
        "before": _mostly_null(texts),
        "idempotencyKey": _mostly_null(st.one_of(st.uuids().map(str), texts)),
        # Mostly none, too: a version guessed wrong ends the mutation at VERSION_CONFLICT.
        "expectedVersion": st.sampled_from([False, False, False, True]).flatmap(
            lambda given: (
                st.integers(-1, 5).map(nodes.Int) if given else st.just(graphql.NullValueNode())
            )
        ),
    }


class _Refit(graphql.Visitor):
    """Redraws the values of the fields and arguments `_by_field` knows."""

    def __init__(self, draw: st.DrawFn, strategies: dict[str, st.SearchStrategy[Any]]) -> None:
        super().__init__()
        self.draw = draw
        self.strategies = strategies

    def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> Any:
        return self._refit(node, graphql.ArgumentNode)

    def enter_object_field(self, node: graphql.ObjectFieldNode, *_: Any) -> Any:
        return self._refit(node, graphql.ObjectFieldNode)

    def _refit(self, node: Any, kind: type[Any]) -> Any:
        strategy = self.strategies.get(node.name.value)
        if strategy is None or not isinstance(
            node.value, graphql.StringValueNode | graphql.IntValueNode | graphql.NullValueNode
        ):
            return None
        return kind(name=node.name, value=self.draw(strategy))


@st.composite
def _documents(draw: st.DrawFn, known: Known) -> graphql.DocumentNode:
    document = draw(from_schema(SCHEMA, custom_scalars=scalars(known), print_ast=lambda d: d))
    refitted: graphql.DocumentNode = graphql.visit(document, _Refit(draw, _by_field(known)))
    return refitted


@dataclass(frozen=True)
class Operation:
    """One request body: the document and its variables (maybe none), and who sends it."""

    query: str
    variables: dict[str, Any]
    caller: str = "admin"

    def body(self) -> bytes:
        # ASCII JSON: a lone surrogate travels as an escape, as a browser would send it.
        payload: dict[str, Any] = {"query": self.query}
        if self.variables:
            payload["variables"] = self.variables
        return json.dumps(payload, ensure_ascii=True).encode()

    def __repr__(self) -> str:
        # What Hypothesis prints for a falsifying example: enough to send it again by hand.
        return f"Operation(caller={self.caller!r}, body={self.body().decode()[:4000]!r})"


def inline(document: graphql.DocumentNode) -> Operation:
    return Operation(graphql.print_ast(document), {})


class _StringsToVariables(graphql.Visitor):
    """Replaces every string literal by a variable of the type its position expects."""

    def __init__(self, type_info: graphql.TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.definitions: list[graphql.VariableDefinitionNode] = []
        self.values: dict[str, Any] = {}

    def enter_string_value(self, node: graphql.StringValueNode, *_: Any) -> Any:
        expected = self.type_info.get_input_type()
        if expected is None:
            return None
        name = f"v{len(self.values)}"
        self.values[name] = node.value
        self.definitions.append(
            graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                type=graphql.parse_type(str(expected)),
                directives=(),
            )
        )
        return graphql.VariableNode(name=graphql.NameNode(value=name))


def as_variables(document: graphql.DocumentNode) -> Operation:
    lifter = _StringsToVariables(graphql.TypeInfo(SCHEMA))
    lifted = graphql.visit(document, graphql.TypeInfoVisitor(lifter.type_info, lifter))
    (operation,) = lifted.definitions
    operation = graphql.OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=tuple(lifter.definitions),
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    return Operation(
        graphql.print_ast(graphql.DocumentNode(definitions=(operation,))), lifter.values
    )


def operations(known: Known) -> st.SearchStrategy[Operation]:
    """Valid queries and mutations of the whole schema, text inline or in variables,
    each from one of `CALLERS`."""
    documents = _documents(known)
    bodies = st.one_of(documents.map(inline), documents.map(as_variables))
    return st.tuples(bodies, st.sampled_from(CALLERS)).map(
        lambda pair: replace(pair[0], caller=pair[1])
    )


def answer_problems(status: int, content_type: str, text: str) -> list[str]:
    """What is wrong with an answer to a valid operation; empty when it is a proper one.

    A proper answer is GraphQL-over-HTTP JSON (an object with `data` and/or a
    non-empty `errors` list of objects with a message), never a 5xx, and no
    error is an unexpected one (`INTERNAL_SERVER_ERROR`)."""
    problems = []
    if status >= 500:
        problems.append(f"HTTP {status}")
    if "json" not in content_type:
        problems.append(f"content-type {content_type!r}")
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        return [*problems, f"body is not JSON ({error})"]
    if not isinstance(body, dict) or not body.keys() & {"data", "errors"}:
        return [*problems, "body has neither data nor errors"]
    if unknown := body.keys() - {"data", "errors", "extensions"}:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    if "data" in body and not isinstance(body["data"], dict | None):
        problems.append("data is neither an object nor null")
    errors = body.get("errors", [])
    if not isinstance(errors, list) or ("errors" in body and not errors):
        return [*problems, "errors is not a non-empty list"]
    for error in errors:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            problems.append(f"malformed error {error!r:.200}")
            continue
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL_SERVER_ERROR":
            problems.append(f"INTERNAL_SERVER_ERROR at {error.get('path')}")
    return problems


def _refuse_constant(name: str) -> float:
    # NaN and Infinity are not JSON; Python's json would accept them silently.
    raise ValueError(f"{name} is not JSON")
