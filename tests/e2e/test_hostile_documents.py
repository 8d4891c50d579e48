"""Hostile documents against the running service: the fragment bomb is refused
with its code and freezes nobody, introspection still works, and an operation
that outlives its deadline answers DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from tests.e2e.conftest import BIN, Server, _free_port, _serving

pytestmark = pytest.mark.elasticsearch

# Generous bounds that only a frozen event loop could miss; they measure no speed.
ANSWER_WITHIN = 10.0

PRODUCTS = "{ products(first: 5) { totalCount edges { node { id sku } } } }"


def bomb(levels: int, leaf: str = "a: readModel { indexedUpTo }") -> str:
    """The issue's fragment bomb, 1.2 KB at 30 levels: each fragment spreads the
    next one twice, so expanded it holds 2^levels copies of the leaf."""
    fragments = [f"fragment F{i} on Query{{...F{i + 1} ...F{i + 1}}}" for i in range(levels)]
    return " ".join(["query{...F0}", *fragments, f"fragment F{levels} on Query{{{leaf}}}"])


def codes(body: dict[str, Any]) -> set[str]:
    return {error["extensions"]["code"] for error in body.get("errors") or ()}


def post(server: Server, query: str, timeout: float = ANSWER_WITHIN) -> httpx.Response:
    return httpx.post(f"{server.url}/graphql", json={"query": query}, timeout=timeout)


def test_the_fragment_bomb_is_refused_with_its_codes_at_every_depth(server: Server) -> None:
    for levels in (10, 20, 30):
        with_alias = post(server, bomb(levels))
        without_alias = post(server, bomb(levels, leaf="readModel { indexedUpTo }"))

        assert with_alias.status_code in (200, 400), with_alias.text
        assert with_alias.json()["data"] is None
        assert {"TOO_MANY_ALIASES", "TOO_MANY_FIELDS"} <= codes(with_alias.json())
        assert without_alias.json()["data"] is None
        assert "TOO_MANY_FIELDS" in codes(without_alias.json())


async def test_health_and_other_queries_answer_while_the_bomb_is_sent_in_a_loop(
    server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=ANSWER_WITHIN) as client:
        stop = asyncio.Event()
        refused = 0

        async def bombard() -> None:
            nonlocal refused
            while not stop.is_set():
                response = await client.post("/graphql", json={"query": bomb(30)})
                assert "TOO_MANY_ALIASES" in codes(response.json())
                refused += 1

        bombers = [asyncio.create_task(bombard()) for _ in range(2)]
        try:
            for _ in range(10):
                health = await client.get("/healthz")
                products = await client.post("/graphql", json={"query": PRODUCTS})

                assert health.json() == {"status": "ok"}
                assert products.status_code == 200
                assert "errors" not in products.json(), products.text
                assert products.json()["data"]["products"]["totalCount"] >= 0
        finally:
            stop.set()
            await asyncio.gather(*bombers)

        assert refused > 0  # the bomb really was being sent meanwhile


def test_graphiqls_introspection_query_works_over_http(server: Server) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )

    response = post(server, query)

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body.get("errors")
    assert {"Query", "Mutation", "Product"} <= {
        t["name"] for t in body["data"]["__schema"]["types"]
    }
    assert body["extensions"]["cost"]["requested"] <= body["extensions"]["cost"]["limit"]


@pytest.fixture
def hasty_server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bicameral serve` as the `server` fixture runs it, with a deadline of half a
    second and a consistency wait far longer than that."""
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": "",
        "ELASTICSEARCH_URL": elasticsearch_url,
        "INDEX_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
        "PORT": str(_free_port()),
        "FEED_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
        "REQUEST_TIMEOUT": "0.5",
        "CONSISTENCY_TIMEOUT": "30",
    }
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    try:
        with _serving(env, tmp_path / "serve.log") as running:
            yield running
    finally:
        httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)


def test_an_operation_past_its_deadline_answers_deadline_exceeded(hasty_server: Server) -> None:
    # A token far beyond the head: the wait would last CONSISTENCY_TIMEOUT (30 s).
    held = '{ product(id: "p-1", consistencyToken: "999999999") { id } }'
    started = time.monotonic()

    response = post(hasty_server, held)

    assert time.monotonic() - started < ANSWER_WITHIN
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert codes(body) == {"DEADLINE_EXCEEDED"}
    assert "0.5 s" in body["errors"][0]["message"]
    # ...and the service goes on answering.
    assert post(hasty_server, PRODUCTS).json()["data"]["products"]["totalCount"] >= 0
