"""relay-compiler (npm, pinned in tests/clients/package.json) accepts the
schema: `@connection` forward and backward, `@refetchable` on a fragment of
each Node type. The compiler refuses either directive when the schema lacks
what Relay's server specification asks for (PageInfo's four fields, `Node`,
`node(id:)`), so its success is the specification's check.

Needs node and npm; installs the pinned packages (`npm ci`) when they are
missing, and fails loudly, never skips, when it cannot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from graphql import DocumentNode, ObjectTypeDefinitionNode, parse, print_ast

CLIENTS = Path(__file__).resolve().parent
ROOT = CLIENTS.parent.parent
SCHEMA = ROOT / "schema.graphql"
DOCUMENTS = CLIENTS / "relay"
# Generous: only a hang could come near it.
DEADLINE = 300


@pytest.fixture(scope="module")
def relay_compiler() -> Path:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("relay-compiler runs on node: install node and npm (e.g. apt-get install npm)")
    binary = CLIENTS / "node_modules" / "relay-compiler" / "cli.js"
    if not binary.exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=CLIENTS,
            check=True,
            timeout=DEADLINE,
        )
    return binary


def compile_documents(
    compiler: Path, project: Path, schema_text: str
) -> subprocess.CompletedProcess[str]:
    """Runs relay-compiler over the test documents and `schema_text` in `project`."""
    (project / "src" / "__generated__").mkdir(parents=True)
    for document in DOCUMENTS.glob("*.js"):
        shutil.copy(document, project / "src" / document.name)
    (project / "schema.graphql").write_text(schema_text)
    (project / "relay.config.json").write_text(
        json.dumps(
            {
                "src": "./src",
                "schema": "./schema.graphql",
                "language": "javascript",
                "artifactDirectory": "./src/__generated__",
            }
        )
    )
    return subprocess.run(
        ["node", str(compiler)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_relay_compiler_accepts_connections_both_ways_and_refetchable_fragments(
    relay_compiler: Path, tmp_path: Path
) -> None:
    result = compile_documents(relay_compiler, tmp_path, SCHEMA.read_text())

    assert result.returncode == 0, result.stdout + result.stderr
    generated = tmp_path / "src" / "__generated__"
    refetch = (generated / "ProductCardRefetchQuery.graphql.js").read_text()
    assert '"name": "node"' in refetch  # the refetch query goes through node(id:)
    backward = (generated / "OrderHistoryPaginationQuery.graphql.js").read_text()
    assert '"name": "before"' in backward and '"name": "last"' in backward
    for name in ("OrderHistoryOrderRefetchQuery", "OrderHistoryCustomerRefetchQuery"):
        assert (generated / f"{name}.graphql.js").exists()
    assert (generated / "ProductListPaginationQuery.graphql.js").exists()


def _without_field(schema_text: str, type_name: str, field_name: str) -> str:
    """The schema with one field of one type taken out (its description and
    arguments with it), printed back as SDL."""
    document = parse(schema_text)
    definitions = []
    found = False
    for definition in document.definitions:
        if isinstance(definition, ObjectTypeDefinitionNode) and definition.name.value == type_name:
            fields = tuple(f for f in definition.fields or () if f.name.value != field_name)
            found = len(fields) != len(definition.fields or ())
            definition = ObjectTypeDefinitionNode(
                **{key: getattr(definition, key) for key in definition.keys if key != "fields"},
                fields=fields,
            )
        definitions.append(definition)
    assert found, f"{type_name}.{field_name} is not in the schema"
    return print_ast(DocumentNode(definitions=tuple(definitions)))


@pytest.mark.parametrize(
    ("type_name", "field_name"),
    [("Query", "node"), ("PageInfo", "hasPreviousPage"), ("PageInfo", "startCursor")],
    ids=["without-node-field", "without-has-previous-page", "without-start-cursor"],
)
def test_relay_compiler_refuses_a_schema_without_what_relay_asks_for(
    relay_compiler: Path, tmp_path: Path, type_name: str, field_name: str
) -> None:
    schema = _without_field(SCHEMA.read_text(), type_name, field_name)

    result = compile_documents(relay_compiler, tmp_path, schema)

    assert result.returncode != 0
    assert field_name in result.stdout + result.stderr
