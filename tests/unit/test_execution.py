"""The shorter path for plain fields (api/execution.py) answers exactly as graphql-core does.

Each query runs twice, on the same schema with strawberry's own execution
context and with ours, and the two results must be equal: data, errors, their
messages, paths and locations.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension

from api.execution import PlainFieldsExecutionContext, plain_fields
from api.http import dumps
from api.types import SCALARS, Long


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    name: str
    count: int
    nickname: str | None
    colour: Colour
    sold: Long
    at: datetime
    tags: list[str]
    labels: list[str | None] | None = None
    colours: list[Colour] = dataclasses.field(default_factory=list)

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def times(self, n: int) -> int:
        return self.count * n


def _item(**changes: Any) -> Item:
    values: dict[str, Any] = {
        "name": "widget",
        "count": 3,
        "nickname": None,
        "colour": Colour.BLUE,
        "sold": Long(7),
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "tags": ["a", "b"],
    }
    values.update(changes)
    return Item(**values)


ITEMS: list[Item] = []


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    def maybe(self) -> Item | None:
        return ITEMS[0] if ITEMS else None


QUERY = """{
  items { name count nickname colour sold at tags shout times(n: 2) alias: name __typename }
  maybe { name nickname }
}"""


class Seen(SchemaExtension):
    """An extension hooking every resolution, as strawberry's tracing does."""

    fields: list[str] = []

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        Seen.fields.append(info.field_name)
        return _next(root, info, *args, **kwargs)


def _schemas(**kwargs: Any) -> tuple[strawberry.Schema, strawberry.Schema]:
    config = strawberry.schema.config.StrawberryConfig(scalar_map=SCALARS)
    plain = strawberry.Schema(
        query=Query, config=config, execution_context_class=PlainFieldsExecutionContext, **kwargs
    )
    return strawberry.Schema(query=Query, config=config, **kwargs), plain


def _both(items: list[Item], query: str = QUERY, **kwargs: Any) -> tuple[Any, Any]:
    ITEMS[:] = items
    ordinary, plain = _schemas(**kwargs)
    return ordinary.execute_sync(query), plain.execute_sync(query)


LISTS = "{ items { name tags labels colours } }"


def _shape(result: Any) -> dict[str, Any]:
    return {
        "data": result.data,
        "errors": [error.formatted for error in result.errors or ()],
    }


def test_plain_fields_are_the_scalar_fields_without_resolver_or_arguments() -> None:
    _ordinary, plain = _schemas()
    item = plain._schema.type_map["Item"]
    assert sorted(plain_fields(item)) == [
        "at",
        "colour",
        "colours",
        "count",
        "labels",
        "name",
        "nickname",
        "sold",
        "tags",
    ]


def test_an_ordinary_page_answers_the_same_data() -> None:
    ordinary, plain = _both([_item(), _item(name="gadget", nickname="g", colour=Colour.RED)])
    assert not plain.errors
    assert _shape(plain) == _shape(ordinary)
    # In the selection's order, as graphql-core gives it.
    assert json.dumps(plain.data) == json.dumps(ordinary.data)
    assert plain.data["items"][1] == {
        "name": "gadget",
        "count": 3,
        "nickname": "g",
        "colour": "RED",
        "sold": 7,
        "at": "2026-01-02T03:04:05+00:00",
        "tags": ["a", "b"],
        "shout": "GADGET",
        "times": 6,
        "alias": "gadget",
        "__typename": "Item",
    }


def test_a_null_in_a_non_null_field_gives_graphql_cores_error_and_path() -> None:
    ordinary, plain = _both([_item(), _item(name=None)])
    assert plain.errors
    assert _shape(plain) == _shape(ordinary)
    assert plain.errors[0].path == ["items", 1, "name"]


def test_a_value_its_scalar_refuses_gives_graphql_cores_error() -> None:
    for bad in (
        _item(count="three"),
        _item(sold=2**60),
        _item(colour="green"),
        _item(at="yesterday"),
    ):
        ordinary, plain = _both([bad])
        assert plain.errors, bad
        assert _shape(plain) == _shape(ordinary)


def test_lists_of_leaves_answer_the_same_data() -> None:
    ordinary, plain = _both(
        [
            _item(tags=("x", "y"), labels=["a", None], colours=[Colour.RED, Colour.BLUE]),
            _item(tags=[], labels=None),
            # Another iterable (both runs read it: not a generator) goes graphql-core's way.
            _item(tags=dict.fromkeys(["from", "a", "view"]).keys()),
        ],
        LISTS,
    )
    assert not plain.errors
    assert _shape(plain) == _shape(ordinary)
    assert plain.data["items"][0] == {
        "name": "widget",
        "tags": ["x", "y"],
        "labels": ["a", None],
        "colours": ["RED", "BLUE"],
    }
    assert plain.data["items"][2]["tags"] == ["from", "a", "view"]


def test_a_bad_item_of_a_list_gives_graphql_cores_error_and_path() -> None:
    for bad in (
        _item(tags=["a", None]),
        _item(colours=[Colour.RED, "green"]),
        _item(tags=None),
        _item(tags="not a list"),
        _item(labels=[object()]),
    ):
        ordinary, plain = _both([_item(), bad], LISTS)
        assert plain.errors, bad
        assert _shape(plain) == _shape(ordinary)
        assert plain.errors[0].path[:2] == ["items", 1]


def test_a_missing_attribute_gives_graphql_cores_error() -> None:
    broken = _item()
    del broken.nickname
    ordinary, plain = _both([broken])
    assert plain.errors
    assert _shape(plain) == _shape(ordinary)


def test_an_extension_hooking_every_resolution_still_sees_every_field() -> None:
    Seen.fields = []
    ordinary, _ = _both([_item()], extensions=[Seen])
    expected = sorted(Seen.fields)
    Seen.fields = []
    _, plain = _both([_item()], extensions=[Seen])
    assert sorted(Seen.fields) == expected
    assert "count" in Seen.fields and "nickname" in Seen.fields
    assert _shape(plain) == _shape(ordinary)


def test_the_answer_encodes_to_the_same_json_as_json_dumps() -> None:
    answer = {
        "data": {"name": "Café ☕ \u2028", "n": 2**53 - 1, "f": 1.5, "b": True, "none": None},
        "errors": [{"message": "x", "path": ["a", 0], "extensions": {"code": "X"}}],
    }
    assert json.loads(dumps(answer)) == json.loads(json.dumps(answer))


def test_what_orjson_refuses_json_dumps_still_writes() -> None:
    for answer in ({"n": 2**70}, {1: "a key that is not a string"}):
        assert dumps(answer) == json.dumps(answer, separators=(",", ":")).encode()
