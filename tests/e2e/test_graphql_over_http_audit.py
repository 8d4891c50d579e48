"""The GraphQL-over-HTTP spec's own audit, run by its reference implementation
(graphql-http's `auditServer`, from npm, in node) against `bicameral serve`.

Every audit passes, the SHOULDs and MAYs as well as the MUSTs, with no warning.
tests/unit/test_graphql_over_http.py makes the same requests in process, one test
per case, so that a failure here is found there by name.
"""

from __future__ import annotations

import pytest

from tests.clients.run import run_node
from tests.e2e.conftest import Server

pytestmark = pytest.mark.elasticsearch

# graphql-http 1.23.1 (pinned in tests/clients/package.json) has this many.
AUDITS = 61


def test_every_graphql_over_http_audit_passes_without_a_warning(server: Server) -> None:
    results = run_node("audit.mjs", {"url": f"{server.url}/graphql"})

    failed = [r for r in results if r["status"] != "ok"]
    assert failed == []
    assert len(results) == AUDITS
    assert len({r["id"] for r in results}) == AUDITS
