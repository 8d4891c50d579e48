"""The GraphQL documents the benchmarks send, and a client for them over HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

__all__ = [
    "CHANGES",
    "CREATE_PRODUCT",
    "PLACE_ORDER",
    "PRODUCTS",
    "GraphQLFailure",
    "http_client",
    "post",
    "post_persisted",
]

# Every field of a product: the answer carries what the raw search's _source does.
PRODUCTS = """
query Search($search: String!) {
  products(search: $search, first: 20) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id version sku name description category tags
        price { amount currency }
        status
        stock { version onHand reserved available inStock }
        unitsSold createdAt updatedAt
      }
    }
  }
}"""

CREATE_PRODUCT = """
mutation Create($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { consistencyToken product { id version } }
    ... on Error { code field message }
  }
}"""

PLACE_ORDER = """
mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on PlaceOrderSuccess { consistencyToken order { id version } }
    ... on Error { code field message }
  }
}"""

CHANGES = """
subscription { changes(types: [PRODUCT]) { entityType id version position kind } }"""


class GraphQLFailure(RuntimeError):
    """The answer had errors, or a mutation answered with a typed error."""


def http_client(concurrency: int, bearer: str | None = None) -> httpx.AsyncClient:
    """Keep-alive connections, one per concurrent request; loopback only, no proxies.
    With `bearer`, every request carries it (`bicameral serve` wants an admin's token
    for mutations and the changes feed; the baselines take none)."""
    return httpx.AsyncClient(
        trust_env=False,
        headers={"Authorization": f"Bearer {bearer}"} if bearer else None,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


async def post(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(url, json={"query": query, "variables": variables})
    return _data(response)


async def post_persisted(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """As Apollo's persisted-query link sends it: the hash alone and, when the service
    answers PERSISTED_QUERY_NOT_FOUND (404), the hash with the query, which registers it."""
    digest = hashlib.sha256(query.encode()).hexdigest()
    body: dict[str, Any] = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        "variables": variables,
    }
    response = await client.post(url, json=body)
    if response.status_code == 404:
        response = await client.post(url, json={**body, "query": query})
    return _data(response)


def _data(response: httpx.Response) -> dict[str, Any]:
    """The answer's `data`; a GraphQLFailure when it has errors."""
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    if answer.get("errors"):
        raise GraphQLFailure(str(answer["errors"])[:300])
    data: dict[str, Any] = answer["data"]
    return data


def mutation_payload(data: dict[str, Any], field: str) -> dict[str, Any]:
    """The success payload of a mutation; a typed error raises."""
    payload: dict[str, Any] = data[field]
    if not payload["__typename"].endswith("Success"):
        raise GraphQLFailure(f"{field}: {payload}")
    return payload
