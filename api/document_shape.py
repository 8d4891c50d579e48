"""How many fields of a document merge into one response key: the measure that
bounds graphql-core's OverlappingFieldsCanBeMergedRule.

That rule compares every two fields that share a response key, through
fragments and inline fragments, and for each such pair compares their
selections in turn; so its work grows with the square of how many fields
merge into one key (`{ readModel { indexedUpTo } readModel { indexedUpTo } ...}`
250 times: 0.35 s; 250 inline fragments of it: 0.7 s; 250 fragments of it:
1.1 s, all within the other limits).

`repetition` is how many fields of the document end up under one response
path, for the worst path: the fields named `readModel` in a selection
(counted through its fragments and inline fragments), times the repetition
inside their selections. Bounding it by R bounds the rule's pairs at each
path by R², and so its whole work by about R times the field limit.

Each fragment is flattened once, after the fragments it spreads, and its
profile reused at every spread, so this too is linear in the document (it
runs only once every definition is within the field limit, which bounds each
profile's size).
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

__all__ = ["Profile", "repetition", "repetitions"]

# Response key -> (how many fields carry it, the worst repetition inside them).
Profile = dict[str, tuple[int, int]]

# Past every limit a count only needs to stay cheap to multiply.
_SATURATED = 10**12


def repetitions(
    fragments: dict[str, FragmentDefinitionNode], order: Iterable[str]
) -> dict[str, Profile]:
    """The flattened profile of each fragment, given in dependency order (a
    fragment after every fragment it spreads; one that closes a cycle is left
    out and counts as nothing, and NoFragmentCyclesRule reports it)."""
    profiles: dict[str, Profile] = {}
    for name in order:
        profiles[name] = profile(fragments[name].selection_set, profiles)
    return profiles


def profile(selection_set: SelectionSetNode, fragments: dict[str, Profile]) -> Profile:
    """One selection set flattened through its inline fragments and spreads.
    Recursion follows the nesting of one definition, which the parser bounds."""
    found: Profile = {}
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            key = (selection.alias or selection.name).value
            inner = (
                repetition(profile(selection.selection_set, fragments))
                if selection.selection_set
                else 1
            )
            _merge(found, {key: (1, inner)})
        elif isinstance(selection, InlineFragmentNode):
            _merge(found, profile(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            _merge(found, fragments.get(selection.name.value, {}))
    return found


def repetition(found: Profile) -> int:
    """The most fields that merge into one response path below this selection."""
    return max((min(count * inner, _SATURATED) for count, inner in found.values()), default=1)


def _merge(into: Profile, other: Profile) -> None:
    for key, (count, inner) in other.items():
        had_count, had_inner = into.get(key, (0, 1))
        into[key] = (min(had_count + count, _SATURATED), max(had_inner, inner))
