"""`bicameral serve` runs one process per core by default (uvicorn's workers on one
socket), one on SQLite; and a subscriber connected to any of its processes hears
the writes every other process takes.

Which process a connection lands on is the kernel's choice; the test finds out
from /proc (the server-side socket of the connection, and which child holds it),
opens subscribers until every process has one, and then writes: whichever
process takes a write, some subscriber listens on another.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from api.auth import LocalSigningKey
from tests.e2e.conftest import (
    BIN,
    Server,
    _running,
    next_change,
    product_changes,
    serve_env,
)
from tools import pg_server

pytestmark = pytest.mark.elasticsearch

NOTE_TIMEOUT = 20.0  # for one expected notification (the worker polls every 0.2 s)
READY_TIMEOUT = 60.0  # for every process of one serve to start
MOST_CONNECTIONS = 40  # subscribers opened at most to reach every process

CREATE_PRODUCT = """
mutation($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { product { id } }
    ... on Error { code message }
  }
}"""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


@contextmanager
def _serving(env: dict[str, str], log: Path) -> Iterator[tuple[Server, int]]:
    """`bicameral serve` once every process it starts has started: the server and
    its number of processes (as its log says them)."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with _running("serve", env, log) as process:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            text = log.read_text()
            if "processes:" in text:
                processes = int(text.split("processes:", 1)[1].split()[0])
                if text.count("Application startup complete") >= processes:
                    break
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.1)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert text.count("Started server process") == processes, text[-3000:]
        yield Server(url, env, log), process.pid


def _server_side_inode(port: int, client_port: int) -> str:
    """The inode of the server's end of the TCP connection from `client_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == port and (
                int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return fields[9]
    raise AssertionError(f"no server socket for the connection from port {client_port}")


def _holder(candidates: set[int], inode: str) -> int:
    """Which of `candidates` holds the socket `inode`."""
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of {sorted(candidates)} holds socket {inode}")


async def _subscribers_total(server: Server) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{server.url}/metrics")).text
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("bicameral_subscribers ")
    )


async def _every_process_hears_every_other(server: Server, serve_pid: int, processes: int) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    workers = _children(serve_pid) if processes > 1 else {serve_pid}
    async with AsyncExitStack() as stack:
        listeners: list[tuple[int, ClientConnection]] = []
        while len({pid for pid, _ in listeners}) < processes:
            assert len(listeners) < MOST_CONNECTIONS, (
                f"{MOST_CONNECTIONS} connections all reached {sorted({p for p, _ in listeners})}"
            )
            ws = await stack.enter_async_context(product_changes(server, NOTE_TIMEOUT))
            pid = _holder(workers, _server_side_inode(port, ws.local_address[1]))
            listeners.append((pid, ws))
        deadline = time.monotonic() + NOTE_TIMEOUT
        while await _subscribers_total(server) != len(listeners):
            assert time.monotonic() < deadline, "subscribers not all registered"
            await asyncio.sleep(0.05)
        created = []
        for n in range(2 * processes):
            # A connection each, so the writes too land on the kernel's choice of process.
            async with httpx.AsyncClient(base_url=server.url, headers=server.headers()) as http:
                response = await http.post(
                    "/graphql",
                    json={
                        "query": CREATE_PRODUCT,
                        "variables": {
                            "input": {
                                "sku": f"PROC-{n}-{uuid.uuid4().hex[:6]}",
                                "name": f"Product {n}",
                                "price": 100,
                                "currency": "EUR",
                            }
                        },
                    },
                )
            result = response.json()["data"]["createProduct"]
            assert result["__typename"] == "CreateProductSuccess", result
            created.append(result["product"]["id"])
        for pid, ws in listeners:
            heard = [(await next_change(ws, NOTE_TIMEOUT))["id"] for _ in created]
            assert heard == created, f"the subscriber on process {pid} heard {heard}"


@contextmanager
def _deployment(env: dict[str, str], folder: Path) -> Iterator[tuple[Server, int]]:
    """`bicameral serve` in `env` (on PostgreSQL migrated first, beside a `bicameral
    worker`), its server and pid; its indexes go afterwards."""
    try:
        with ExitStack() as stack:
            if env["DATABASE_URL"]:
                command = [BIN / "bicameral", "migrate"]
                subprocess.run(command, env=env, check=True, capture_output=True)
                stack.enter_context(_running("worker", env, folder / "worker.log"))
            LocalSigningKey.load_or_create(folder)
            yield stack.enter_context(_serving(env, folder / "serve.log"))
    finally:
        httpx.delete(f"{env['ELASTICSEARCH_URL']}/{env['INDEX_PREFIX']}-*", timeout=10)


def _processes(server: Server) -> int:
    """The number of processes `bicameral serve` said it runs."""
    return int(server.log.read_text().split("processes:", 1)[1].split()[0])


@pytest.mark.postgres
async def test_serve_on_postgresql_runs_a_process_per_core_and_each_hears_the_others_writes(
    postgres_server_url: str, elasticsearch_url: str, tmp_path: Path
) -> None:
    with pg_server.temporary_database(postgres_server_url, prefix="e2e_") as database_url:
        env = serve_env(
            elasticsearch_url,
            tmp_path,
            DATABASE_URL=database_url,
            EMBEDDED_WORKER="false",
            WEB_CONCURRENCY="",  # the default
            LOG_LEVEL="info",
        )
        with _deployment(env, tmp_path) as (server, pid):
            assert _processes(server) == len(os.sched_getaffinity(0))
            await _every_process_hears_every_other(server, pid, _processes(server))


def test_serve_on_sqlite_runs_one_process_unless_told(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    env = serve_env(elasticsearch_url, tmp_path, WEB_CONCURRENCY="", LOG_LEVEL="info")
    with _deployment(env, tmp_path) as (server, pid):
        assert _processes(server) == 1
        assert not _children(pid)


async def test_serve_on_sqlite_with_two_processes_still_delivers_each_write_to_both(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    # Told to, SQLite runs several: each embeds a feed worker (one holds the leases)
    # and a change hub, and a write crosses by the others' polls, not a NOTIFY.
    env = serve_env(elasticsearch_url, tmp_path, WEB_CONCURRENCY="2", LOG_LEVEL="info")
    with _deployment(env, tmp_path) as (server, pid):
        assert _processes(server) == 2
        await _every_process_hears_every_other(server, pid, 2)
