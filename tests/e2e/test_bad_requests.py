"""Bad requests and transports against `bicameral serve` as a real process.

Malformed HTTP bodies get a GraphQL-shaped 4xx and the process keeps serving;
both WebSocket protocols answer every operation (a syntax error with an
`error`, a legacy-protocol query with its result); SIGTERM ends the process
while requests are busy; `serve` migrates an embedded SQLite file itself and
refuses an unmigrated PostgreSQL database in one line; `--workers` runs
several processes. The in-process unit tests (tests/unit/test_bad_requests.py)
cover each class of malformed body in depth.

Requests that need a right (mutations, the `changes` feed) carry an admin's
token: what is refused here is the request's shape, never the caller.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import BIN, Server, _running, _serving, serve_env
from tools import pg_server

pytestmark = pytest.mark.elasticsearch

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

# Generous bounds that only detect a hang.
ANSWER_TIMEOUT = 20.0
EXIT_TIMEOUT = 45.0  # SHUTDOWN_TIMEOUT is 5 s, stopping the worker up to 10 s more


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The body without `extensions` (the cost report rides on every answer)."""
    body: dict[str, Any] = response.json()
    body.pop("extensions", None)
    return body


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/graphql"


@pytest.fixture
def cleanup_indexes(elasticsearch_url: str) -> Iterator[list[str]]:
    prefixes: list[str] = []
    yield prefixes
    for prefix in prefixes:
        httpx.delete(f"{elasticsearch_url}/{prefix}-*", timeout=10)


# --- HTTP ---

BAD_BODIES: list[tuple[bytes, str, int, str]] = [
    (b'"hello"', "application/json", 400, "BAD_REQUEST"),
    (b"42", "application/json", 400, "BAD_REQUEST"),
    (b"[1, 2]", "application/json", 400, "BAD_REQUEST"),
    (b"null", "application/json", 400, "BAD_REQUEST"),
    (b'{"query": "\xff\xfe"}', "application/json", 400, "BAD_REQUEST"),
    (b"{not json", "application/json", 400, "BAD_REQUEST"),
    (b'{"query": 1}', "application/json", 400, "BAD_REQUEST"),
    (b'{"query": "{__typename}", "variables": []}', "application/json", 400, "BAD_REQUEST"),
    (b'{"query": "{__typename}", "extensions": 1}', "application/json", 400, "BAD_REQUEST"),
    (b'{"query": "{__typename}", "operationName": 1}', "application/json", 400, "BAD_REQUEST"),
    (
        b'{"query": "{__typename}", "variables": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        "application/json",
        400,
        "BAD_REQUEST",
    ),
    (
        b'{"query": "{__typename}", "variables": {"a": "' + b"x" * 2_000_000 + b'"}}',
        "application/json",
        413,
        "REQUEST_TOO_LARGE",
    ),
    (b'{"query": "{__typename}"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b'{"query": "query A {a: __typename} query B {b: __typename}"}', "application/json", 400,
     "OPERATION_NAME_REQUIRED"),
    (b'{"query": "query A {__typename}", "operationName": "B"}', "application/json", 400,
     "OPERATION_NOT_FOUND"),
    (b'{"query": "subscription { changes { id } }"}', "application/json", 400,
     "SUBSCRIPTION_NEEDS_WEBSOCKET"),
]  # fmt: skip


def test_every_bad_body_gets_its_4xx_and_the_server_keeps_serving(server: Server) -> None:
    # As an admin: the `changes` body must meet SUBSCRIPTION_NEEDS_WEBSOCKET, not FORBIDDEN.
    with httpx.Client(
        base_url=server.url, timeout=ANSWER_TIMEOUT, headers=server.headers()
    ) as http:
        for body, content_type, status, code in BAD_BODIES:
            response = http.post("/graphql", content=body, headers={"content-type": content_type})
            assert (response.status_code, response.json()["errors"][0]["extensions"]["code"]) == (
                status,
                code,
            ), (body[:60], response.text[:300])
        assert http.get("/healthz").status_code == 200
        assert _answer(http.post("/graphql", json={"query": "{ __typename }"})) == {
            "data": {"__typename": "Query"}
        }
    assert "Traceback" not in server.log.read_text()


def test_a_body_trickled_in_chunks_past_the_limit_is_refused(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "{__typename}", "variables": {"a": "'
        for _ in range(40):
            yield b"x" * 65_536
        yield b'"}}'

    with httpx.Client(base_url=server.url, timeout=ANSWER_TIMEOUT) as http:
        response = http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


# --- WebSocket ---


async def connect(server: Server, protocol: str) -> Any:
    """A socket past `connection_ack`, as an admin (the token in `connection_init`)."""
    ws = await websockets.connect(ws_url(server), subprotocols=[protocol], open_timeout=10)
    await ws.send(json.dumps({"type": "connection_init", "payload": server.init_payload()}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def answers(ws: Any, operation_id: str) -> list[dict[str, Any]]:
    """Messages for `operation_id` until the one that ends it (`error` or `complete`);
    keep-alives and others' messages are skipped."""
    heard: list[dict[str, Any]] = []
    async with asyncio.timeout(ANSWER_TIMEOUT):
        while True:
            message = json.loads(await ws.recv())
            if message.get("id") != operation_id:
                continue
            heard.append(message)
            if message["type"] in ("error", "complete"):
                return heard


def start(protocol: str, operation_id: str, payload: Any) -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return json.dumps({"id": operation_id, "type": kind, "payload": payload})


def error_codes(message: dict[str, Any]) -> list[str]:
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else [payload]
    return [e["extensions"]["code"] for e in errors]


REFUSED_OPERATIONS = [
    ({"query": "subscription { changes { id "}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "subscription {"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ __typename"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "subscription { nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": "subscription A { changes { id } } subscription B { changes { id } }"},
     "OPERATION_NAME_REQUIRED"),
    ({"query": "query A { __typename } query B { __typename }"}, "OPERATION_NAME_REQUIRED"),
    ({"query": "subscription A { changes { id } }", "operationName": "Z"}, "OPERATION_NOT_FOUND"),
    ({"query": ""}, "BAD_REQUEST"),
    ({"query": 5}, "BAD_REQUEST"),
    ({"query": "{ __typename }", "variables": [1]}, "BAD_REQUEST"),
]  # fmt: skip


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_operation_refused_before_it_starts_gets_an_error_not_silence(
    server: Server, protocol: str
) -> None:
    ws = await connect(server, protocol)
    try:
        for n, (payload, code) in enumerate(REFUSED_OPERATIONS):
            await ws.send(start(protocol, str(n), payload))
            heard = await answers(ws, str(n))
            # `error` is the first and last word: no `complete` before it.
            assert [m["type"] for m in heard] == ["error"], (payload, heard)
            assert error_codes(heard[0]) == [code], (payload, heard)
        # The connection still serves.
        await ws.send(start(protocol, "ok", {"query": "{ __typename }"}))
        assert [m["type"] for m in await answers(ws, "ok")] == [
            "next" if protocol == TRANSPORT_WS else "data",
            "complete",
        ]
    finally:
        await ws.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_operation_past_the_limit_of_one_connection_gets_a_coded_error(
    server: Server, protocol: str
) -> None:
    ws = await connect(server, protocol)
    try:
        for n in range(100):
            await ws.send(start(protocol, str(n), {"query": "subscription { changes { id } }"}))
        await ws.send(start(protocol, "101st", {"query": "subscription { changes { id } }"}))
        [error] = await answers(ws, "101st")
        assert error["type"] == "error"
        assert error_codes(error) == ["TOO_MANY_OPERATIONS"]
    finally:
        await ws.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_queries_and_mutations_run_over_both_websocket_protocols(
    server: Server, protocol: str
) -> None:
    sku = f"WS-{uuid.uuid4().hex[:8].upper()}"
    create = """mutation($sku: String!) {
      createProduct(input: {sku: $sku, name: "Over a socket", price: 100, currency: "EUR"}) {
        __typename ... on CreateProductSuccess { product { sku } } ... on Error { code } } }"""
    ws = await connect(server, protocol)
    try:
        await ws.send(start(protocol, "q", {"query": "query Q { __typename }"}))
        query = await answers(ws, "q")
        await ws.send(start(protocol, "m", {"query": create, "variables": {"sku": sku}}))
        mutation = await answers(ws, "m")
    finally:
        await ws.close()
    data = "next" if protocol == TRANSPORT_WS else "data"
    assert [m["type"] for m in query] == [data, "complete"]
    assert query[0]["payload"]["data"] == {"__typename": "Query"}
    assert "errors" not in query[0]["payload"]
    assert [m["type"] for m in mutation] == [data, "complete"]
    assert mutation[0]["payload"]["data"]["createProduct"] == {
        "__typename": "CreateProductSuccess",
        "product": {"sku": sku},
    }


MALFORMED_MESSAGES = [
    "not json",
    "5",
    '"subscribe"',
    "[]",
    json.dumps({"type": 5}),
    json.dumps({"id": ["1"], "type": "subscribe", "payload": {"query": "{ a }"}}),
    json.dumps({"id": "1", "type": "subscribe", "payload": "{ __typename }"}),
    json.dumps({"id": "1", "type": "subscribe"}),
    json.dumps({"type": "subscribe", "payload": {"query": "{ __typename }"}}),
    json.dumps({"id": "1", "type": "unknown"}),
    '{"type": "ping", "payload": {"a": ' + "[" * 1_000 + "]" * 1_000 + "}}",
    json.dumps({"id": "1", "type": "subscribe", "payload": {}}).replace(
        "{}", "[" * 100_000 + "]" * 100_000
    ),
]


async def test_a_malformed_message_closes_the_new_protocol_with_4400(server: Server) -> None:
    for message in MALFORMED_MESSAGES:
        ws = await connect(server, TRANSPORT_WS)
        await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None, message[:60]
        assert closed.value.rcvd.code == 4400, (message[:60], closed.value.rcvd)
    assert "Traceback" not in server.log.read_text()


async def test_a_malformed_message_on_the_legacy_protocol_leaves_the_connection_serving(
    server: Server,
) -> None:
    ws = await connect(server, LEGACY_WS)
    try:
        for message in ["not json", "5", "[]", json.dumps({"type": 5}), '{"type": "start"}']:
            await ws.send(message)
        await ws.send(start(LEGACY_WS, "1", "{ __typename }"))
        assert error_codes((await answers(ws, "1"))[0]) == ["BAD_REQUEST"]
        await ws.send(start(LEGACY_WS, "2", {"query": "{ __typename }"}))
        assert [m["type"] for m in await answers(ws, "2")] == ["data", "complete"]
    finally:
        await ws.close()
    assert "Traceback" not in server.log.read_text()


# --- the process: migration, workers, SIGTERM ---


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_serve_migrates_a_never_migrated_sqlite_file_itself(
    elasticsearch_url: str, tmp_path: Path, cleanup_indexes: list[str]
) -> None:
    env = serve_env(elasticsearch_url, tmp_path)
    cleanup_indexes.append(env["INDEX_PREFIX"])
    assert not (tmp_path / "bicameral.db").exists()
    with _serving(env, tmp_path / "serve.log") as running, httpx.Client() as http:
        response = http.post(
            f"{running.url}/graphql",
            json={
                "query": 'mutation { registerCustomer(input: {email: "m@example.com", name: "M"})'
                " { __typename } }"
            },
            headers=running.headers(),
            timeout=ANSWER_TIMEOUT,
        )
        assert _answer(response) == {
            "data": {"registerCustomer": {"__typename": "RegisterCustomerSuccess"}}
        }
    assert "no such table" not in (tmp_path / "serve.log").read_text()


@pytest.mark.postgres
def test_serve_on_a_never_migrated_postgres_database_exits_with_one_clear_line(
    postgres_server_url: str, elasticsearch_url: str, tmp_path: Path
) -> None:
    with pg_server.temporary_database(postgres_server_url, prefix="e2e_") as database_url:
        env = serve_env(elasticsearch_url, tmp_path, DATABASE_URL=database_url)
        done = subprocess.run(
            [BIN / "bicameral", "serve"], env=env, capture_output=True, timeout=60, check=False
        )
    assert done.returncode != 0
    err = done.stderr.decode()
    assert "run `bicameral migrate`" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def _trickling_request(url: str) -> socket.socket:
    """A POST that says it has 1,000 bytes of body and sends 10: busy until cut off."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"query": '
    )
    return sock


async def _parked_query(server: Server) -> None:
    """A read that waits for a consistency token far ahead (CONSISTENCY_TIMEOUT is long)."""
    async with httpx.AsyncClient(timeout=600, headers=server.headers()) as http:
        await http.post(
            f"{server.url}/graphql",
            json={"query": '{ product(sku: "X", consistencyToken: "99999999") { id } }'},
        )


def test_sigterm_ends_serve_while_requests_are_busy(
    elasticsearch_url: str, tmp_path: Path, cleanup_indexes: list[str]
) -> None:
    env = serve_env(elasticsearch_url, tmp_path, CONSISTENCY_TIMEOUT="600", LOG_LEVEL="info")
    cleanup_indexes.append(env["INDEX_PREFIX"])
    with serving(env, tmp_path / "serve.log") as (process, running):
        sock = _trickling_request(running.url)
        loop = asyncio.new_event_loop()
        parked = loop.create_task(_parked_query(running))
        subscriber = loop.create_task(_subscriber(running))
        loop.run_until_complete(asyncio.sleep(1.0))  # both are in flight
        try:
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = _wait_exit(process, EXIT_TIMEOUT)
        finally:
            sock.close()
            for task in (parked, subscriber):
                task.cancel()
            loop.run_until_complete(asyncio.gather(parked, subscriber, return_exceptions=True))
            loop.close()
        assert code is not None, f"still running {EXIT_TIMEOUT} s after SIGTERM"
        assert time.monotonic() - started < EXIT_TIMEOUT


async def _subscriber(server: Server) -> None:
    ws = await connect(server, TRANSPORT_WS)
    await ws.send(start(TRANSPORT_WS, "s", {"query": "subscription { changes { id } }"}))
    await ws.wait_closed()


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], Server]]:
    """`bicameral serve` once /healthz answers, with its process, to send signals to."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with _running("serve", env, log) as process:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield process, Server(url, env, log)


def test_serve_with_two_workers_runs_two_processes_that_both_answer_and_stop(
    elasticsearch_url: str, tmp_path: Path, cleanup_indexes: list[str]
) -> None:
    env = serve_env(elasticsearch_url, tmp_path, WEB_CONCURRENCY="2", LOG_LEVEL="info")
    cleanup_indexes.append(env["INDEX_PREFIX"])
    log = tmp_path / "serve.log"
    with serving(env, log) as (process, running), httpx.Client(timeout=ANSWER_TIMEOUT) as http:
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        for _ in range(20):
            response = http.post(f"{running.url}/graphql", json={"query": "{ __typename }"})
            assert _answer(response) == {"data": {"__typename": "Query"}}
        process.send_signal(signal.SIGTERM)
        assert _wait_exit(process, EXIT_TIMEOUT) is not None
    started = [line for line in log.read_text().splitlines() if "Started server process" in line]
    assert len(started) == 2, started


def _fragment_bomb(levels: int) -> str:
    """Each fragment spreads the next twice: 2**levels expansions for a naive validator."""
    fragments = " ".join(
        f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)
    )
    return f"query {{ ...F0 }} {fragments} fragment F{levels} on Query {{ __typename }}"


def test_sigterm_ends_serve_even_while_a_request_holds_the_event_loop(
    elasticsearch_url: str, tmp_path: Path, cleanup_indexes: list[str]
) -> None:
    # A document that keeps validation busy for minutes where it is not linear. Should
    # validation refuse it at once, this still shows SIGTERM ends the process.
    env = serve_env(elasticsearch_url, tmp_path)
    cleanup_indexes.append(env["INDEX_PREFIX"])
    log = tmp_path / "serve.log"
    with serving(env, log) as (process, running):
        sender = threading.Thread(
            target=lambda: _send_ignoring_errors(running.url, _fragment_bomb(26)), daemon=True
        )
        sender.start()
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        code = _wait_exit(process, EXIT_TIMEOUT)
        assert code is not None, f"still running {EXIT_TIMEOUT} s after SIGTERM"


def _send_ignoring_errors(url: str, query: str) -> None:
    try:
        httpx.post(f"{url}/graphql", json={"query": query}, timeout=EXIT_TIMEOUT + 10)
    except httpx.HTTPError:
        pass  # the process ended under it: what the test wants
