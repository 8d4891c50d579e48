"""The running service, as `bicameral serve` starts it: a real process on a real port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.identity import Role
from tools import pg_server

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    log: Path

    def token(
        self,
        role: Role = Role.ADMIN,
        *,
        customer_id: str | None = None,
        subject: str = "e2e-tests",
        ttl: timedelta = timedelta(hours=2),
    ) -> str:
        """A token this deployment accepts: signed with the local key `bicameral serve`
        keeps in its DATA_DIR, with the issuer, audience and claims its settings name
        (as `bicameral token` makes them)."""
        key = LocalSigningKey.load_or_create(Path(self.env["DATA_DIR"]))
        return key.token(
            role=role,
            subject=subject,
            customer_id=customer_id,
            ttl=ttl,
            issuer=self.env.get("AUTH_ISSUER") or LOCAL_ISSUER,
            audience=self.env.get("AUTH_AUDIENCE") or LOCAL_AUDIENCE,
            role_claim=self.env.get("AUTH_ROLE_CLAIM") or "role",
            customer_claim=self.env.get("AUTH_CUSTOMER_CLAIM") or "customer_id",
        )

    def headers(
        self, role: Role = Role.ADMIN, *, customer_id: str | None = None, subject: str = "e2e-tests"
    ) -> dict[str, str]:
        """HTTP headers that carry `token(...)`; an admin's unless told otherwise."""
        return {
            "Authorization": f"Bearer {self.token(role, customer_id=customer_id, subject=subject)}"
        }

    def init_payload(
        self, role: Role = Role.ADMIN, *, customer_id: str | None = None, subject: str = "e2e-tests"
    ) -> dict[str, str]:
        """A WebSocket `connection_init` payload that carries `token(...)`."""
        return self.headers(role, customer_id=customer_id, subject=subject)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _running(command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`bicameral <command>` as a child process, logging to `log`; stopped on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen([BIN / "bicameral", command], env=env, stdout=out, stderr=out)
    try:
        yield process
    finally:
        _stop(process)


@contextmanager
def _serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """`bicameral serve` on env's PORT, once its /healthz answers; stopped on exit."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with _running("serve", env, log) as process:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"bicameral serve exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bicameral serve did not answer in 30 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(url, env, log)


def serve_env(elasticsearch_url: str, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a deployment of its own: SQLite in `folder`, a fresh index
    prefix and a free port; `extra` adds or overrides settings."""
    return {
        **os.environ,
        "DATA_DIR": str(folder),
        "DATABASE_URL": "",
        "ELASTICSEARCH_URL": elasticsearch_url,
        "INDEX_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
        "PORT": str(_free_port()),
        "FEED_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
        # One process, whatever the caller's environment: tests that count tasks,
        # subscribers or log lines of one process stay deterministic.
        # tests/e2e/test_serve_processes.py covers the default (WEB_CONCURRENCY="").
        "WEB_CONCURRENCY": "1",
        **extra,
    }


@contextmanager
def migrated_and_serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """`bicameral migrate` then `bicameral serve` in `env`; its indexes go afterwards."""
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    try:
        with _serving(env, log) as running:
            yield running
    finally:
        httpx.delete(f"{env['ELASTICSEARCH_URL']}/{env['INDEX_PREFIX']}-*", timeout=10)


@pytest.fixture
def server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bicameral migrate` then `bicameral serve` on SQLite with its embedded worker."""
    with migrated_and_serving(serve_env(elasticsearch_url, tmp_path), tmp_path / "serve.log") as s:
        yield s


@dataclass(frozen=True)
class Cluster:
    """Past one machine: API processes and a feed worker sharing one PostgreSQL."""

    apis: tuple[Server, ...]
    worker_log: Path
    database_url: str


@pytest.fixture(scope="module")
def postgres_cluster(
    postgres_server_url: str, elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """On one fresh PostgreSQL database and one index prefix: `bicameral migrate` once,
    two `bicameral serve` processes without a worker, and one `bicameral worker`."""
    folder = tmp_path_factory.mktemp("cluster")
    with pg_server.temporary_database(postgres_server_url, prefix="e2e_") as database_url:
        # Each API one process (serve_env's): a test that writes through one and
        # listens on the other knows it crossed processes.
        env = serve_env(
            elasticsearch_url, folder, DATABASE_URL=database_url, EMBEDDED_WORKER="false"
        )
        subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
        # The APIs share DATA_DIR, so they verify tokens with one key. Each would make it
        # (the file is created atomically, the loser of a race reads the winner's), but
        # made first it is there for certain before any token is minted.
        LocalSigningKey.load_or_create(folder)
        try:
            with ExitStack() as stack:
                worker_log = folder / "worker.log"
                worker = stack.enter_context(_running("worker", env, worker_log))
                apis = tuple(
                    stack.enter_context(
                        _serving({**env, "PORT": str(_free_port())}, folder / f"serve-{n}.log")
                    )
                    for n in (1, 2)
                )
                if worker.poll() is not None:
                    pytest.fail(f"bicameral worker exited:\n{worker_log.read_text()[-3000:]}")
                yield Cluster(apis, worker_log, database_url)
        finally:
            httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)


PRODUCT_CHANGES = "subscription { changes(types: [PRODUCT]) { id kind position } }"


@asynccontextmanager
async def product_changes(server: Server, timeout: float) -> AsyncIterator[ClientConnection]:
    """A WebSocket (graphql-transport-ws) subscribed to every product change;
    `timeout` bounds the wait for the server's acknowledgement."""
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": server.headers()}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PRODUCT_CHANGES}})
        )
        yield ws


async def next_change(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    """The next `changes` notification on `ws` (within `timeout` seconds)."""
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert message["type"] == "next", message
    change: dict[str, Any] = message["payload"]["data"]["changes"]
    return change
