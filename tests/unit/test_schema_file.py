"""`schema.graphql` is generated from the code (`make schema`) and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from api.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def exported() -> str:
    # What `strawberry export-schema --output` writes: the printed schema and one newline.
    return schema.as_str() + "\n"


def test_the_committed_schema_file_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_bytes().decode("utf-8")

    assert committed == exported(), (
        "schema.graphql differs from api.schema; run `make schema` and commit the result"
    )


def test_the_schema_file_declares_both_root_types() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")

    assert "\ntype Query {" in committed
    assert "\ntype Mutation {" in committed
    assert committed.endswith("}\n")
    assert not committed.endswith("\n\n")
