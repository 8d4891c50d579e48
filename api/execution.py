"""A shorter path through graphql-core for the fields that only read an attribute.

Profiling `products(first: 100)` with every product field (docs/performance.md,
"Large pages") showed that the time of a large page goes to graphql-core's
per-field machinery, not to the search or to our conversions: for each of the
2,200 fields of the page it looks the field up, builds a `GraphQLResolveInfo`,
calls strawberry's default resolver through three layers, and walks
`complete_value` down to the scalar. For a scalar or enum field with no
resolver, no arguments and no extension hooking its resolution, all of that
comes down to `getattr` and the type's output coercion: that is what this
execution context does for them, and nothing else. A list of scalars or enums
(`tags`) likewise comes down to `getattr` and the coercion of each item.

The result stays exactly graphql-core's: anything out of the ordinary (the
attribute raises, is awaitable, is null where the type says non-null, or does
not coerce) goes the ordinary way, which reads the attribute again and answers
with graphql-core's own error, path and locations. An extension that hooks
every resolution (strawberry's tracing, when OpenTelemetry is on) installs a
middleware, and then every field goes the ordinary way, so it sees every one.
Fields with a resolver (`email`, the policy's field-level check; the root
fields), object fields and lists of objects are never shortened; nor is a list
that is not a plain list or tuple (a generator, an async iterable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

__all__ = ["PlainFieldsExecutionContext", "plain_fields"]


@dataclass(frozen=True, slots=True)
class _Plain:
    """How to answer one plain field: read `attribute`, coerce with `leaf`."""

    read: Callable[[Any, str], Any]  # strawberry's default resolver: getattr
    attribute: str
    leaf: GraphQLLeafType
    non_null: bool
    # A list of leaves (`tags: [String!]!`): each item coerced; `item_non_null` for its items.
    listed: bool = False
    item_non_null: bool = False


# Per object type of a built schema; a schema that is dropped takes its entries along.
_PLAIN: WeakKeyDictionary[GraphQLObjectType, dict[str, _Plain]] = WeakKeyDictionary()


def _plain(field: GraphQLField) -> _Plain | None:
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    # strawberry marks the resolver it makes for a field without resolver,
    # permission or field extension (`is_basic_field`) with `_is_default`.
    if (
        not isinstance(definition, StrawberryField)
        or field.args
        or not getattr(field.resolve, "_is_default", False)
        or not definition.is_basic_field
    ):
        return None
    kind: Any = field.type
    non_null = isinstance(kind, GraphQLNonNull)
    if isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    listed = isinstance(kind, GraphQLList)
    item_non_null = False
    if listed:
        kind = kind.of_type
        item_non_null = isinstance(kind, GraphQLNonNull)
        if item_non_null:
            kind = kind.of_type
    if not isinstance(kind, GraphQLScalarType | GraphQLEnumType):
        return None
    return _Plain(
        definition.default_resolver,
        definition.python_name,
        kind,
        non_null,
        listed,
        item_non_null,
    )


def plain_fields(parent: GraphQLObjectType) -> dict[str, _Plain]:
    """The fields of `parent` answered by reading an attribute, by GraphQL name."""
    found = _PLAIN.get(parent)
    if found is None:
        found = {}
        for name, field in parent.fields.items():
            if (plain := _plain(field)) is not None:
                found[name] = plain
        _PLAIN[parent] = found
    return found


# Values no attribute read turns into an awaitable: no need to ask.
_SETTLED = frozenset({str, int, bool, float})
# The lists answered here; any other iterable (a generator, an async iterable, a
# string) goes graphql-core's way.
_SEQUENCES = frozenset({list, tuple})


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with plain scalar fields read directly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # strawberry always installs a manager, with no middleware unless an
        # extension hooks resolution; then every field goes the ordinary way.
        manager = self.middleware_manager
        self._shorten = manager is None or not manager.middlewares
        # This request's lookups, without the weak mapping's cost on each field.
        self._plain: dict[GraphQLObjectType, dict[str, _Plain]] = {}

    def _plain_of(self, parent_type: GraphQLObjectType) -> dict[str, _Plain]:
        fields = self._plain.get(parent_type)
        if fields is None:
            fields = self._plain[parent_type] = plain_fields(parent_type)
        return fields

    def _read(self, plain: _Plain, source: Any) -> Any:
        """What graphql-core would answer, or Undefined when graphql-core must
        answer (with the error it gives)."""
        try:
            value = plain.read(source, plain.attribute)
            if value is None or value is Undefined:
                return Undefined if plain.non_null else None
            if plain.listed:
                return self._read_list(plain, value)
            if value.__class__ in _SETTLED or not self.is_awaitable(value):
                coerced = plain.leaf.coerce_output_value(value)
                if coerced is not None:
                    return coerced
        except Exception:  # graphql-core meets it again, and locates it
            pass
        return Undefined

    def _read_list(self, plain: _Plain, value: Any) -> Any:
        """A list of leaves: only a plain list or tuple whose every item is settled
        (no awaitable, no async iterable: graphql-core's way for those); a null
        item is fine where the items may be null."""
        if value.__class__ not in _SEQUENCES:
            return Undefined
        coerce = plain.leaf.coerce_output_value
        items: list[Any] = []
        for item in value:
            if item is None:
                if plain.item_non_null:
                    return Undefined
                items.append(None)
                continue
            if item.__class__ not in _SETTLED and self.is_awaitable(item):
                return Undefined
            coerced = coerce(item)
            if coerced is None:
                return Undefined
            items.append(coerced)
        return items

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: dict[str, FieldDetailsList],
        position_context: Any,
    ) -> Any:
        """The plain fields answered here; the others (and any plain one that
        must go graphql-core's way) by graphql-core, in their order, and the
        answers put back in the order of the selection."""
        fields = self._plain_of(parent_type) if self._shorten else None
        if not fields:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        answered: dict[str, Any] = {}
        ordinary: dict[str, FieldDetailsList] = {}
        for response_name, field_details_list in grouped_field_set.items():
            plain = fields.get(field_details_list[0].node.name.value)
            if plain is not None:
                value = self._read(plain, source_value)
                if value is not Undefined:
                    answered[response_name] = value
                    continue
            ordinary[response_name] = field_details_list
        if not ordinary:
            return answered
        rest = super().execute_fields(parent_type, source_value, path, ordinary, position_context)
        if self.is_awaitable(rest):

            async def in_order() -> dict[str, Any]:
                return _in_order(grouped_field_set, answered, await rest)

            return in_order()
        return _in_order(grouped_field_set, answered, cast(dict[str, Any], rest))


def _in_order(
    grouped_field_set: dict[str, FieldDetailsList],
    answered: dict[str, Any],
    rest: dict[str, Any],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in grouped_field_set:
        if name in answered:
            results[name] = answered[name]
        elif name in rest:  # absent: a field graphql-core skipped (Undefined)
            results[name] = rest[name]
    return results
