"""`possible-types.json` (Apollo's `possibleTypes`) is generated from the schema
(`make schema`) and must not drift from it."""

from __future__ import annotations

import json
from pathlib import Path

from graphql import build_schema, get_named_type

from api.schema import schema
from tools.possible_types import render

ROOT = Path(__file__).resolve().parents[2]
POSSIBLE_TYPES_FILE = ROOT / "possible-types.json"


def test_the_committed_possible_types_match_the_code() -> None:
    committed = POSSIBLE_TYPES_FILE.read_text(encoding="utf-8")

    assert committed == render(schema.as_str()), (
        "possible-types.json differs from api.schema; run `make schema` and commit the result"
    )


def test_every_mutation_result_lists_its_success_and_its_errors() -> None:
    possible = json.loads(POSSIBLE_TYPES_FILE.read_text(encoding="utf-8"))

    assert "PlaceOrderSuccess" in possible["PlaceOrderResult"]
    assert "InvalidInputError" in possible["PlaceOrderResult"]
    assert possible["Error"] == sorted(
        [
            "AlreadyExistsError",
            "ForbiddenError",
            "InvalidInputError",
            "NotFoundError",
            "RuleBrokenError",
            "VersionConflictError",
        ]
    )
    # Every mutation answers a union the map knows.
    mutation = build_schema(schema.as_str()).mutation_type
    assert mutation is not None
    results = {get_named_type(field.type).name for field in mutation.fields.values()}
    assert results <= set(possible)
