"""Path 1's share spent before execution: parsing and validating the query, uncached.

The service caches both by document (ParserCache, ValidationCache), so a client
that repeats one query pays them once; a client that varies its documents, and
any hostile one, pays them on every request. This measures that price for the
path-1 document, as the schema pays it: the parse options (the token limit) and
the validation rules are the ones the schema's own extensions set for this very
document, read by a probe during one real `schema.execute`, and validation goes
through strawberry's `validate_document`, as the schema's does. So whatever
rules `api.schema` adds or replaces are measured without a change here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import ASTValidationRule, GraphQLSchema, parse, specified_rules, validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from bench.graphql import GraphQLFailure
from bench.report import Figure
from bench.stats import Distribution

__all__ = ["SchemaChecks", "figure", "probe"]


@dataclass(frozen=True)
class SchemaChecks:
    """What the schema parses and validates a document with."""

    schema: GraphQLSchema  # graphql-core's, as strawberry built it
    parse_options: dict[str, Any]
    rules: tuple[type[ASTValidationRule], ...]

    @property
    def added_rules(self) -> list[type[ASTValidationRule]]:
        """The schema's rules beyond graphql-core's standard ones (its limits)."""
        return [rule for rule in self.rules if rule not in specified_rules]


async def probe(app: Any, query: str, variables: dict[str, Any]) -> SchemaChecks:
    """Execute `query` once through a schema built as the service builds it, plus a
    probe that runs after every other extension has set the rules."""
    from api.context import Context
    from api.identity import Identity, Role
    from api.schema import build_schema

    seen: list[SchemaChecks] = []

    class Probe(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            seen.append(
                SchemaChecks(
                    context.schema._schema,
                    dict(context.parse_options),
                    tuple(context.validation_rules),
                )
            )
            yield

    settings = app.settings
    schema = build_schema(mask_errors=settings.mask_errors, introspection=settings.introspection)
    # The last extension's on_validate begins after every other one's.
    schema.extensions = [*schema.extensions, Probe]
    result = await schema.execute(
        query,
        variable_values=variables,
        context_value=Context(
            app=app, request=None, identity=Identity(Role.ADMIN, subject="bench")
        ),
    )
    if result.errors or not seen:
        raise GraphQLFailure(f"the probe's execution failed: {result.errors}"[:300])
    return seen[0]


def _timed(repeats: int, work: Any) -> Distribution:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return Distribution.of(samples)


def figure(
    query: str, checks: SchemaChecks, in_process_p50_ms: float, repeats: int = 200
) -> Figure:
    """Parse + validate p50 (ms), as a share of path 1's in-process p50."""
    graphql_schema = checks.schema
    document = parse(query, **checks.parse_options)
    errors = validate_document(graphql_schema, document, checks.rules)
    if errors:
        raise GraphQLFailure(f"the path-1 document does not validate: {errors}"[:300])
    parsing = _timed(repeats, lambda: parse(query, **checks.parse_options))
    validating = _timed(repeats, lambda: validate_document(graphql_schema, document, checks.rules))
    standard = _timed(repeats, lambda: validate(graphql_schema, document, specified_rules))
    added = {
        rule.__name__: _timed(repeats, lambda rule=rule: validate(graphql_schema, document, [rule]))
        for rule in checks.added_rules
    }
    return Figure(
        path="1",
        measure="parse + validate, uncached, schema's rules / GraphQL in-process p50 (share)",
        system=parsing.p50 + validating.p50,
        baseline=in_process_p50_ms,
        unit="ms",
        target=None,
        system_is="graphql-core parse with the schema's parse options, then strawberry's "
        "validate_document with the rules the schema's extensions set",
        baseline_is="path 1's GraphQL in-process (schema.execute) p50, caches warm",
        details={
            "parse_ms": parsing.as_dict(),
            "validate_ms": validating.as_dict(),
            "validate_standard_rules_only_ms": standard.as_dict(),
            "added_rules_alone_p50_ms": {name: d.p50 for name, d in added.items()},
            "rules": len(checks.rules),
            "parse_options": {k: str(v) for k, v in checks.parse_options.items()},
        },
    )
