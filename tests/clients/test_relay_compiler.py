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


@pytest.mark.parametrize(
    ("removed", "said"),
    [
        ("  node(id: ID!): Node\n", "node"),
        ("  hasPreviousPage: Boolean!\n", "hasPreviousPage"),
        ("  startCursor: String\n", "startCursor"),
    ],
    ids=["without-node-field", "without-has-previous-page", "without-start-cursor"],
)
def test_relay_compiler_refuses_a_schema_without_what_relay_asks_for(
    relay_compiler: Path, tmp_path: Path, removed: str, said: str
) -> None:
    schema = SCHEMA.read_text()
    assert removed in schema

    result = compile_documents(relay_compiler, tmp_path, schema.replace(removed, "", 1))

    assert result.returncode != 0
    assert said in result.stdout + result.stderr
