"""The limits as a validation rule: the document is measured (api/limits.py,
api/document_shape.py) and refused before graphql-core's own rules walk it.

Each limit below bounds something graphql-core's rules would otherwise spend
superlinear time on, so validating any document that passes costs little
(the worst documents measured are in tests/unit/test_validation_cost.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation.validate import ValidationAbortedError  # not re-exported

from api.document_shape import profile, repetition, repetitions
from api.limits import _NOTHING, _SATURATED, LIST_SIZE, Measures, _Measurer, remember

__all__ = ["Limits", "limits_rule"]


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10
    max_aliases: int = 30
    max_fields: int = 500
    max_cost: int = 100_000
    # Fields merging into one response path (api/document_shape.py). The
    # overlap rule compares them pairwise: 250 alike fields cost it 0.35-1.1 s;
    # with 10 the worst found costs a few ms. A client repeating `id` or
    # `__typename` across its fragments stays far below it.
    max_repeated: int = 10
    # Fragment definitions. The overlap rule compares the fragments a selection
    # spreads pairwise even when they share nothing (500 fragments: 0.4-1.3 s;
    # 100: about 20 ms). GraphiQL's introspection query has 3.
    max_fragments: int = 100


def _refusals(measures: Measures, limits: Limits, where: str) -> list[tuple[str, str]]:
    refusals = []
    if measures.depth > limits.max_depth:
        refusals.append(
            (
                "QUERY_TOO_DEEP",
                f"{where} nests {measures.depth} levels deep; it exceeds maximum operation "
                f"depth of {limits.max_depth}.",
            )
        )
    if measures.aliases > limits.max_aliases:
        refusals.append(
            (
                "TOO_MANY_ALIASES",
                f"{where} has {_count(measures.aliases)} aliases with its fragments "
                f"expanded. Allowed: {limits.max_aliases}.",
            )
        )
    if measures.fields > limits.max_fields:
        refusals.append(
            (
                "TOO_MANY_FIELDS",
                f"{where} selects {_count(measures.fields)} fields with its fragments "
                f"expanded. Allowed: {limits.max_fields}.",
            )
        )
    if measures.cost > limits.max_cost:
        refusals.append(
            (
                "QUERY_TOO_COMPLEX",
                f"{where} costs {_count(measures.cost)}, counting each list by its "
                f"`first` or {LIST_SIZE} items. Allowed: {limits.max_cost}.",
            )
        )
    return refusals


def _count(value: int) -> str:
    return f"over {_SATURATED:,}" if value >= _SATURATED else f"{value:,}"


def _document_refusals(
    schema: GraphQLSchema, document: DocumentNode, limits: Limits
) -> list[GraphQLError]:
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    if len(fragments) > limits.max_fragments:
        return [
            GraphQLError(
                f"The document defines {len(fragments):,} fragments. "
                f"Allowed: {limits.max_fragments}.",
                extensions={"code": "DOCUMENT_TOO_COMPLEX"},
            )
        ]
    measurer = _Measurer(schema, document)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    errors = []
    measures: dict[str | None, Measures] = {}
    for operation in operations:
        name = operation.name.value if operation.name else None
        where = f"Operation '{name}'" if name else "The operation"
        measures[name] = measurer.operation(operation)
        errors += [
            GraphQLError(message, operation, extensions={"code": code})
            for code, message in _refusals(measures[name], limits, where)
        ]
    # The cost report reads the same measures after validation: walked once.
    remember(schema, document, measures)
    # graphql-core's rules walk every fragment, used or not.
    for fragment in fragments:
        fields = measurer.measured.get(fragment.name.value, _NOTHING).fields
        if fields > limits.max_fields:
            errors.append(
                GraphQLError(
                    f"Fragment '{fragment.name.value}' selects {_count(fields)} fields with "
                    f"its fragments expanded. Allowed: {limits.max_fields}.",
                    fragment,
                    extensions={"code": "TOO_MANY_FIELDS"},
                )
            )
    if any(_code(error) == "TOO_MANY_FIELDS" for error in errors):
        return errors
    # Only now is every profile bounded by the field limit, so cheap to build.
    profiles = repetitions(measurer.fragments, measurer.order)
    # Typed as the union: the else branch then reads a fragment's name, never None.
    definitions: list[OperationDefinitionNode | FragmentDefinitionNode] = [
        *operations,
        *fragments,
    ]
    for definition in definitions:
        if isinstance(definition, OperationDefinitionNode):
            found = repetition(profile(definition.selection_set, profiles))
            named = definition.name.value if definition.name else None
            where = f"Operation '{named}'" if named else "The operation"
        else:
            found = repetition(profiles.get(definition.name.value, {}))
            where = f"Fragment '{definition.name.value}'"
        if found > limits.max_repeated:
            errors.append(
                GraphQLError(
                    f"{where} merges {_count(found)} fields into one response key, "
                    f"counting its fragments and inline fragments. "
                    f"Allowed: {limits.max_repeated}.",
                    definition,
                    extensions={"code": "TOO_MANY_REPEATED_FIELDS"},
                )
            )
    return errors


# What graphql-core's rules would take superlinear time over: a document past
# one of these is refused before they walk it. One past only the depth, alias
# or cost limit is cheap to validate, so it gets graphql-core's errors as well.
_ABORTING = {"TOO_MANY_FIELDS", "TOO_MANY_REPEATED_FIELDS", "DOCUMENT_TOO_COMPLEX"}


def _code(error: GraphQLError) -> str:
    return str((error.extensions or {}).get("code", ""))


def limits_rule(limits: Limits) -> type[ASTValidationRule]:
    """A validation rule refusing a document past `limits`.

    Make it once: the validation cache is keyed by the rule classes."""

    class OperationLimitsRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.refusals: list[GraphQLError] = []

        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            # The document is the first node visited, so this runs before any
            # other rule has looked at a selection (their constructors and
            # document entries only set up).
            self.refusals = _document_refusals(self.context.schema, node, limits)
            if any(_code(error) in _ABORTING for error in self.refusals):
                # The abort is how graphql-core's own `validate` stops early: it
                # keeps the errors reported so far and adds the abort's.
                *reported, last = self.refusals
                for error in reported:
                    self.report_error(error)
                raise ValidationAbortedError(last.message, last.nodes, extensions=last.extensions)

        # Otherwise on leaving, so they come after the errors of the other rules.
        def leave_document(self, *_args: Any) -> None:
            for error in self.refusals:
                self.report_error(error)

    return OperationLimitsRule
