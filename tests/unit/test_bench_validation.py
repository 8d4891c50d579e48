"""The bench's price of the validation pass: measured with the rules the schema
really applies, read from its own extensions, whatever they are."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from graphql import specified_rules

from api.schema import LIMITS
from api.settings import Settings
from bench import validation

# Executes without Elasticsearch: only the parse and validate steps matter here.
DOCUMENT = "query Probe { __typename }"


async def test_the_probe_reads_the_rules_and_parse_options_the_schema_applies() -> None:
    checks = await validation.probe(SimpleNamespace(settings=Settings()), DOCUMENT, {})

    assert set(specified_rules) <= set(checks.rules)
    assert checks.added_rules, "the schema's own limits are validation rules beyond the standard"
    assert checks.parse_options.get("max_tokens") == LIMITS["max_tokens"]


async def test_the_figure_is_parse_and_validate_as_a_share_of_the_in_process_time() -> None:
    checks = await validation.probe(SimpleNamespace(settings=Settings()), DOCUMENT, {})

    figure = validation.figure(DOCUMENT, checks, in_process_p50_ms=10.0, repeats=5)

    assert figure.path == "1"
    assert figure.target is None
    parse, validate = figure.details["parse_ms"]["p50"], figure.details["validate_ms"]["p50"]
    # The details are rounded to the microsecond.
    assert 0 < figure.system == pytest.approx(parse + validate, abs=0.002)
    assert figure.ratio == figure.system / 10.0
    assert set(figure.details["added_rules_alone_p50_ms"]) == {
        rule.__name__ for rule in checks.added_rules
    }
