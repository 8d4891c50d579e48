"""Apollo Client and urql, the real ones from npm, against `bicameral serve`,
set up as docs/graphql.md ("Clients") shows."""

from __future__ import annotations

import pytest

from tests.clients.run import run_node
from tests.e2e.conftest import Server

pytestmark = pytest.mark.elasticsearch

PRICE_REFUSED = {
    "__typename": "InvalidInputError",
    "code": "PRICE_NOT_POSITIVE",
    "field": "price",
    "message": "a price is between 1 and 2147483647 minor units",
}


def _arguments(server: Server) -> dict[str, str]:
    return {"url": server.url, "token": server.token()}


def test_apollo_with_possible_types_reads_a_mutation_error_through_its_cache(
    server: Server,
) -> None:
    seen = run_node("apollo_possible_types.mjs", _arguments(server))

    assert seen["errorWithPossibleTypes"] == PRICE_REFUSED
    # What the committed map is for: without it, Apollo's cache cannot tell that
    # InvalidInputError is an Error, and the fragment's fields are dropped.
    assert seen["errorWithoutPossibleTypes"] == {"__typename": "InvalidInputError"}
    # The graphql-ws link, authorised by connectionParams, hears the next write.
    assert seen["created"]["__typename"] == "CreateProductSuccess"
    assert seen["heard"]["product"]["sku"] == "APOLLO-2"
    assert seen["product"]["id"] == seen["created"]["product"]["id"]


def test_urql_runs_a_query_and_a_mutation_with_either_cache(server: Server) -> None:
    seen = run_node("urql_query_and_mutation.mjs", _arguments(server))

    for cache, sku in [("document", "URQL-1"), ("graphcache", "URQL-2")]:
        answers = seen[cache]
        assert answers["created"]["__typename"] == "CreateProductSuccess", answers
        assert answers["created"]["product"]["sku"] == sku
        assert answers["refused"] == PRICE_REFUSED
        product = answers["product"]
        assert (product["id"], product["sku"]) == (answers["created"]["product"]["id"], sku)
        assert (product["price"]["amount"], product["price"]["currency"]) == (1250, "EUR")
