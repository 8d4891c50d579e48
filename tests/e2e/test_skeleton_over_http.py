"""The walking skeleton end to end: HTTP in, SQLite, the feed, Elasticsearch, HTTP out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.elasticsearch


def graphql(server: Server, query: str, **variables: Any) -> dict[str, Any]:
    """As an admin: every layer, not the access rules, is what this file proves."""
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers=server.headers(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_product_then_read_it_back_from_the_search_side(server: Server) -> None:
    created = graphql(
        server,
        """mutation($input: CreateProductInput!) {
             createProduct(input: $input) {
               __typename
               ... on CreateProductSuccess { consistencyToken product { id sku } }
               ... on Error { code message }
             }
           }""",
        input={
            "sku": "E2E-1",
            "name": "Walking skeleton",
            "price": 4200,
            "currency": "EUR",
            "description": "proves every layer",
            "initialStock": 2,
        },
    )["data"]["createProduct"]
    assert created["__typename"] == "CreateProductSuccess", created

    read = graphql(
        server,
        """query($id: ID!, $token: String) {
             product(id: $id, consistencyToken: $token) { sku name stock { onHand } }
             products(search: "skeleton", consistencyToken: $token) {
                   totalCount edges { node { id } }
                 }
           }""",
        id=created["product"]["id"],
        token=created["consistencyToken"],
    )

    assert "extensions" not in read or not read["extensions"].get("consistency")
    assert read["data"]["product"] == {
        "sku": "E2E-1",
        "name": "Walking skeleton",
        "stock": {"onHand": 2},
    }
    assert read["data"]["products"]["totalCount"] == 1
    assert read["data"]["products"]["edges"][0]["node"]["id"] == created["product"]["id"]


def test_graphiql_health_and_readiness_answer(server: Server) -> None:
    page = httpx.get(f"{server.url}/graphql", headers={"accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert httpx.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "role": "all"})


def test_bad_requests_get_clear_errors_never_a_500(server: Server) -> None:
    broken_json = httpx.post(
        f"{server.url}/graphql",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    unknown_field = httpx.post(f"{server.url}/graphql", json={"query": "{ nope }"}, timeout=10)
    bad_input = graphql(
        server,
        """mutation { createProduct(input: {sku: "bad sku!", name: "x", price: 1,
             currency: "EUR"}) { __typename ... on Error { code field } } }""",
    )

    assert broken_json.status_code == 400
    assert unknown_field.status_code in (200, 400)
    assert unknown_field.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert bad_input["data"]["createProduct"] == {
        "__typename": "InvalidInputError",
        "code": "SKU_MALFORMED",
        "field": "sku",
    }
