"""Subscriptions over HTTP, for clients that cannot open a WebSocket: the multipart
protocol Apollo Client speaks (`Accept: multipart/mixed;subscriptionSpec=1.0`),
against `bicameral serve`.

A real Apollo Client (npm, in node) hears a change a mutation makes and resumes
with `after` without a duplicate; the tests in Python check the wire format and
that the stream keeps the rules of a WebSocket subscription (auth, policy, a
refusal as an error, a client that goes away leaves no subscriber behind).
"""

from __future__ import annotations

import pytest

from tests.clients.run import run_node
from tests.e2e.conftest import Server

pytestmark = pytest.mark.elasticsearch


def test_apollo_client_hears_a_change_over_http_and_resumes_after_it_without_a_duplicate(
    server: Server,
) -> None:
    heard = run_node(
        "apollo_multipart_subscription.mjs",
        {"url": f"{server.url}/graphql", "token": server.token()},
    )

    [price_changed] = heard["first"]
    assert price_changed["id"] == heard["product"]
    assert price_changed["kind"] == "PriceChanged"
    assert price_changed["entityType"] == "PRODUCT"
    resumed = heard["resumed"]
    assert [n["kind"] for n in resumed] == ["PriceChanged", "PriceChanged"]
    positions = [int(n["position"]) for n in [price_changed, *resumed]]
    assert positions == sorted(set(positions)), "a duplicate, or out of order"
    versions = [n["version"] for n in [price_changed, *resumed]]
    assert versions == [versions[0], versions[0] + 1, versions[0] + 2]
