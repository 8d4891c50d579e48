"""What one operation may ask for, measured in time linear in the document.

One pass measures each operation of a document: its depth, its aliases, its
fields and its cost. A fragment is measured once, from its own selection set,
and its measures are reused at every spread; so a fragment that spreads
another twice, thirty times over, costs thirty small sums here, not 2^30
walks (the strawberry limiters this replaces walked every spread again, and
one 1.2 KB document held the event loop for minutes).

Counts are "as expanded": a fragment spread twice counts its fields twice,
which is what the client asked for, so the fragment bomb is refused for its
2^30 aliases and fields although the executor would merge them.

Depth counts the levels of fields below the root fields: `{ product { price
{ amount } } }` is 2 deep.

The cost model, kept simple so a client can work it out by hand:

- every field costs 1 plus the cost of its selection times a multiplier;
- the multiplier of a field with a `first` argument (and `last`, a
  connection's backward page) is the page it asks for: the number given
  (the larger, if a client gives both, which the field then refuses),
  `PAGE_SIZE_CAP` when it is a variable (validation does not see variables),
  or, when both are left out, `first`'s default (`DEFAULT_PAGE` for a
  connection, whose `first` defaults to null and serves that page);
- the multiplier of a field with an `ids` list argument (`nodes`) is the
  number of ids given, or `PAGE_SIZE_CAP` for a variable;
- a list field without `first` multiplies by `LIST_SIZE`; the `edges` of a
  connection (a list on a type named `...Connection`) are the page that the
  connection's `first` already counted, so they multiply by 1;
- every other field multiplies by 1.

So the cost is about the most values the answer can hold. Introspection
(`__schema`, `__type`) counts towards aliases, fields and cost like any
other field, but not towards depth: graphql-core's MaxIntrospectionDepthRule
bounds its lists, and the type-reference chain GraphiQL asks for is deeper
than any query of this schema needs.

Beyond the operations, the pass bounds what makes graphql-core's own rules
slow, so that the whole validation of any document that passes is small:

- every fragment definition, used or not, is within the field limit (the
  rules walk unused fragments too);
- at most `max_repeated` fields merge into one response path
  (api/document_shape.py: OverlappingFieldsCanBeMergedRule compares them
  pairwise);
- at most `max_fragments` fragment definitions (the same rule compares the
  fragments a selection spreads pairwise: 500 fragments with nothing in
  common, 0.9 s).

A document past any limit is refused before graphql-core's rules walk it,
with only the limits' errors. Worst whole validations measured within the
limits: see tests/unit/test_validation_cost.py.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.type import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    SchemaMetaFieldDef,
    TypeMetaFieldDef,
)

from readmodel.queries import DEFAULT_PAGE

__all__ = [
    "LIST_SIZE",
    "PAGE_SIZE_CAP",
    "Measures",
    "measure_document",
    "measure_operation",
    "remember",
]

# Items a list without `first` is counted as holding (facets, tags, order lines...).
LIST_SIZE = 10
# A `first` given as a variable counts as the largest page the read side serves.
PAGE_SIZE_CAP = 100
# Counts stop growing here: past every limit, they only need to stay cheap to add.
_SATURATED = 10**12


@dataclass(frozen=True)
class Measures:
    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0

    def __add__(self, other: Measures) -> Measures:
        """Two selections side by side: the deeper depth, the other counts summed."""
        return Measures(
            depth=max(self.depth, other.depth),
            aliases=_cap(self.aliases + other.aliases),
            fields=_cap(self.fields + other.fields),
            cost=_cap(self.cost + other.cost),
        )


_NOTHING = Measures()
_NULL = NullValueNode()


def _cap(value: int) -> int:
    return min(value, _SATURATED)


class _Measurer:
    """Measures every operation of one document, each fragment once."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, Measures] = {}
        self.order = self._dependencies_first()
        for name in self.order:
            fragment = self.fragments[name]
            condition = schema.get_type(fragment.type_condition.name.value)
            self.measured[name] = self._selections(fragment.selection_set, condition)

    def _dependencies_first(self) -> list[str]:
        """Fragment names, each after every fragment it spreads. Iterative, so a long
        chain of fragments cannot exhaust the stack; a spread that closes a cycle is
        left out (it measures as nothing, and NoFragmentCyclesRule reports it)."""
        order: list[str] = []
        state: dict[str, str] = {}  # "open" while its spreads are walked, then "done"
        for root in self.fragments:
            if root in state:
                continue
            state[root] = "open"
            stack = [(root, iter(_spreads(self.fragments[root].selection_set)))]
            while stack:
                name, spreads = stack[-1]
                following = next(spreads, None)
                if following is None:
                    stack.pop()
                    state[name] = "done"
                    order.append(name)
                elif following in self.fragments and following not in state:
                    state[following] = "open"
                    stack.append(
                        (following, iter(_spreads(self.fragments[following].selection_set)))
                    )
        return order

    def operation(self, operation: OperationDefinitionNode) -> Measures:
        root = self.schema.get_root_type(operation.operation)
        measures = self._selections(operation.selection_set, root)
        # Depth counts the levels below the root fields, as the limit always has:
        # `{ product { price { amount } } }` is 2 deep.
        return replace(measures, depth=max(measures.depth - 1, 0))

    def _selections(self, selection_set: SelectionSetNode, parent: Any) -> Measures:
        # Recursion here follows the nesting of one definition, which the parser
        # bounds (MAX_NESTING_DEPTH); fragments are looked up, never entered.
        total = _NOTHING
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = (
                    self.schema.get_type(selection.type_condition.name.value)
                    if selection.type_condition
                    else parent
                )
                total += self._selections(selection.selection_set, condition)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.measured.get(selection.name.value, _NOTHING)
        return total

    def _field(self, node: FieldNode, parent: Any) -> Measures:
        definition = _definition(self.schema, parent, node.name.value)
        inner = _NOTHING
        if node.selection_set:
            child = get_named_type(definition.type) if definition else None
            inner = self._selections(node.selection_set, child)
        introspection = node.name.value in ("__schema", "__type")
        return Measures(
            depth=1 if introspection else 1 + inner.depth,
            aliases=_cap((1 if node.alias else 0) + inner.aliases),
            fields=_cap(1 + inner.fields),
            cost=_cap(1 + _multiplier(node, definition, parent) * inner.cost),
        )


def _spreads(selection_set: SelectionSetNode) -> list[str]:
    """The fragments spread anywhere inside one selection set, in order."""
    names: list[str] = []
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.append(selection.name.value)
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append(selection.selection_set)
    return names


def _definition(schema: GraphQLSchema, parent: Any, name: str) -> GraphQLField | None:
    """The field's definition, or None where the document names what the schema
    lacks (validation reports that; the field still counts, as a leaf)."""
    if name == "__schema" and parent is schema.query_type:
        return SchemaMetaFieldDef
    if name == "__type" and parent is schema.query_type:
        return TypeMetaFieldDef
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


def _multiplier(node: FieldNode, definition: GraphQLField | None, parent: Any) -> int:
    if definition is None:
        return 1
    given = {a.name.value: a.value for a in node.arguments or ()}
    if "first" in definition.args:
        # An explicit null is the argument left out.
        sizes = [
            given[name]
            for name in ("first", "last")
            if name in definition.args and not isinstance(given.get(name, _NULL), NullValueNode)
        ]
        if not sizes:
            default = definition.args["first"].default_value
            return max(default, 0) if isinstance(default, int) else DEFAULT_PAGE
        numbers = [int(size.value) for size in sizes if isinstance(size, IntValueNode)]
        if len(numbers) < len(sizes):
            return PAGE_SIZE_CAP  # a variable (or a value validation refuses)
        return _cap(max(*numbers, 0))
    if "ids" in definition.args:
        ids = given.get("ids")
        if ids is None:
            return 1  # validation refuses the missing argument
        if isinstance(ids, ListValueNode):
            return _cap(len(ids.values))
        # A variable; a single id stands for a list of one (input coercion).
        return PAGE_SIZE_CAP if isinstance(ids, VariableNode) else 1
    if is_list_type(get_nullable_type(definition.type)):
        is_page = isinstance(parent, GraphQLNamedType) and parent.name.endswith("Connection")
        return 1 if is_page else LIST_SIZE
    return 1


# Documents measured lately, by identity: the parser cache hands the same document
# object to every request with the same text, so the rule (on a validation cache
# miss) and the cost report (on every request) share one measurement.
_RECENT: OrderedDict[int, tuple[DocumentNode, GraphQLSchema, dict[str | None, Measures]]] = (
    OrderedDict()
)
_RECENT_SIZE = 1024


def measure_document(schema: GraphQLSchema, document: DocumentNode) -> dict[str | None, Measures]:
    """Each operation's measures, by operation name (None for an anonymous one)."""
    key = id(document)
    found = _RECENT.get(key)
    if found is not None and found[0] is document and found[1] is schema:
        _RECENT.move_to_end(key)
        return found[2]
    measurer = _Measurer(schema, document)
    measures = {
        (d.name.value if d.name else None): measurer.operation(d)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    }
    remember(schema, document, measures)
    return measures


def remember(
    schema: GraphQLSchema, document: DocumentNode, measures: dict[str | None, Measures]
) -> None:
    """Keep `measures` for `document`, so the next `measure_document` of the same
    document object (the cost report, after the validation rule) walks nothing."""
    _RECENT[id(document)] = (document, schema, measures)
    if len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)


def measure_operation(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> Measures | None:
    """The measures of the operation that runs: the named one, or the only one."""
    measures = measure_document(schema, document)
    if operation_name is None and len(measures) == 1:
        return next(iter(measures.values()))
    return measures.get(operation_name)
