"""The two sides scale apart: on one PostgreSQL, a `bicameral worker`, a query node
(`NODE_ROLE=query`) and a command node (`NODE_ROLE=command`), each a real process.

With PostgreSQL stopped the query node still answers searches, `product(sku:)`,
`readModel` and a query whose consistency token is already reached, and is ready
while the command node is not; once PostgreSQL is back the command node writes
again. Each node refuses the other's operations with WRONG_NODE_ROLE.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.auth import LocalSigningKey
from tests.e2e.conftest import (
    BIN,
    Server,
    _free_port,
    _running,
    _serving,
    next_change,
    product_changes,
    serve_env,
)
from tools import pg_server
from writemodel.database import create_engine

pytestmark = pytest.mark.elasticsearch

DEADLINE = 30.0  # to detect a hang, never to time anything

CREATE_PRODUCT = """
mutation($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { consistencyToken product { sku } }
    ... on Error { code message }
  }
}"""
BY_SKU = """
query($sku: String!, $token: String) {
  product(sku: $sku, consistencyToken: $token) { sku name }
}"""
SEARCH = 'query { products(search: "Lamp") { totalCount edges { node { sku } } } }'
READ_MODEL = "{ readModel { indexedUpTo projections { name position head lagEvents } } }"


@dataclass(frozen=True)
class Deployment:
    query: Server
    command: Server
    postgres: pg_server.PostgresServer


def _stop_postgres(server: pg_server.PostgresServer) -> None:
    result = server._pg_ctl("stop", "-m", "fast", "-t", "30")
    assert result.returncode == 0, result.stdout + result.stderr


def _start_postgres(server: pg_server.PostgresServer) -> None:
    result = server._pg_ctl("start", "-l", str(server._log), "-t", "60", "-o", f"-p {server.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    server._pid = server._read_pid()


def _post(server: Server, query: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers=server.headers(),
        timeout=DEADLINE,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _create(server: Server, sku: str) -> str:
    created = _post(
        server,
        CREATE_PRODUCT,
        input={"sku": sku, "name": f"Desk Lamp {sku}", "price": 2500, "currency": "EUR"},
    )
    payload = created["data"]["createProduct"]
    assert payload["__typename"] == "CreateProductSuccess", created
    assert payload["product"]["sku"] == sku
    return str(payload["consistencyToken"])


def _read_your_write(query_node: Server, sku: str, token: str) -> dict[str, Any]:
    """The product as the query node shows it once its token is reached."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = _post(query_node, BY_SKU, sku=sku, token=token)
        if answer.get("data", {}).get("product") and "consistency" not in answer.get(
            "extensions", {}
        ):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployment(
    elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("roles")
    with pg_server.PostgresServer() as postgres:
        name = f"roles_{uuid.uuid4().hex[:8]}"
        postgres.create_database(name)
        database_url = postgres.sqlalchemy_url(name)

        async def synchronous_commit() -> None:
            # The throwaway cluster commits asynchronously; a stop must not lose a write.
            engine = create_engine(database_url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(f"ALTER DATABASE {name} SET synchronous_commit = on"))
            finally:
                await engine.dispose()

        asyncio.run(synchronous_commit())
        env = serve_env(
            elasticsearch_url,
            folder,
            DATABASE_URL=database_url,
            EMBEDDED_WORKER="false",
            CONSISTENCY_TIMEOUT="5",
        )
        subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
        LocalSigningKey.load_or_create(folder)  # one key for every node's tokens
        try:
            with ExitStack() as stack:
                stack.enter_context(_running("worker", env, folder / "worker.log"))
                query = stack.enter_context(
                    _serving(
                        {**env, "NODE_ROLE": "query", "PORT": str(_free_port())},
                        folder / "query.log",
                    )
                )
                command = stack.enter_context(
                    _serving(
                        {**env, "NODE_ROLE": "command", "PORT": str(_free_port())},
                        folder / "command.log",
                    )
                )
                yield Deployment(query, command, postgres)
        finally:
            httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)


async def test_a_query_node_serves_reads_while_postgresql_is_stopped(
    deployment: Deployment,
) -> None:
    # The blocking steps run in a thread, so the subscriber's socket is served meanwhile.
    query, command = deployment.query, deployment.command
    token = await asyncio.to_thread(_create, command, "ROLE-1")
    await asyncio.to_thread(_read_your_write, query, "ROLE-1", token)
    async with product_changes(query, DEADLINE) as subscriber:
        # The subscription is live once a change comes through it.
        live = await asyncio.to_thread(_create, command, "ROLE-0")
        assert (await next_change(subscriber, DEADLINE))["position"] == live
        await asyncio.to_thread(_outage, deployment, token)
        # The subscriber kept its socket through the outage and hears the next write.
        after = await asyncio.to_thread(_write_once_postgresql_is_back, command)
        await asyncio.to_thread(_read_your_write, query, "ROLE-2", after)
        assert (await next_change(subscriber, DEADLINE))["position"] == after


def _outage(deployment: Deployment, token: str) -> None:
    query, command = deployment.query, deployment.command
    _stop_postgres(deployment.postgres)
    try:
        found = _post(query, SEARCH)["data"]["products"]
        assert "ROLE-1" in {edge["node"]["sku"] for edge in found["edges"]}
        assert _post(query, BY_SKU, sku="ROLE-1")["data"]["product"]["sku"] == "ROLE-1"

        reached = _post(query, BY_SKU, sku="ROLE-1", token=token)
        assert reached["data"]["product"]["sku"] == "ROLE-1"
        assert "errors" not in reached and "consistency" not in reached.get("extensions", {})

        status = _post(query, READ_MODEL)
        assert "errors" not in status, status
        products = {p["name"]: p for p in status["data"]["readModel"]["projections"]}["products"]
        assert int(products["position"]) >= int(token)

        ready = httpx.get(f"{query.url}/readyz", timeout=DEADLINE)
        assert (ready.status_code, ready.json()["role"]) == (200, "query")
        unready = httpx.get(f"{command.url}/readyz", timeout=DEADLINE)
        assert unready.status_code == 503
        assert unready.json()["role"] == "command"
        assert set(unready.json()["problems"]) == {"write_database"}
    finally:
        _start_postgres(deployment.postgres)


def _write_once_postgresql_is_back(command: Server) -> str:
    """ROLE-2, created through the command node; its token. The node's pool
    reconnects by itself: the first writes after the restart may still fail."""
    deadline = time.monotonic() + DEADLINE
    while True:
        created = _post(
            command,
            CREATE_PRODUCT,
            input={"sku": "ROLE-2", "name": "Desk Lamp ROLE-2", "price": 2600, "currency": "EUR"},
        )
        if "errors" not in created:
            break
        assert created["errors"][0]["extensions"]["code"] == "WRITE_DATABASE_UNAVAILABLE"
        assert time.monotonic() < deadline, created
        time.sleep(0.5)
    payload = created["data"]["createProduct"]
    assert payload["__typename"] == "CreateProductSuccess", created
    return str(payload["consistencyToken"])


def test_each_node_refuses_the_other_roles_operations(deployment: Deployment) -> None:
    refused = _post(
        deployment.query,
        CREATE_PRODUCT,
        input={"sku": "ROLE-3", "name": "Never", "price": 1, "currency": "EUR"},
    )
    assert refused.get("data") is None
    assert refused["errors"][0]["extensions"] == {"code": "WRONG_NODE_ROLE", "role": "query"}

    refused = _post(deployment.command, SEARCH)
    assert refused.get("data") is None
    assert refused["errors"][0]["extensions"] == {"code": "WRONG_NODE_ROLE", "role": "command"}
    assert "query node" in refused["errors"][0]["message"]


def test_readyz_names_the_role_of_an_all_node_too(tmp_path: Path, elasticsearch_url: str) -> None:
    from tests.e2e.conftest import migrated_and_serving, serve_env

    env = serve_env(elasticsearch_url, tmp_path)
    with migrated_and_serving(env, tmp_path / "serve.log") as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=DEADLINE)
    assert ready.json() == {"status": "ready", "role": "all"}
