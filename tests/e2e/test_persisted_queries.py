"""Persisted queries and trusted documents against `bicameral serve` as a real process.

Apollo's automatic persisted queries over POST, GET and both WebSocket protocols (an
unknown hash, then the hash with its query, then the hash alone), a query that is
not its hash, the document size bound, how GET answers may be cached; then a
deployment with TRUSTED_DOCUMENTS, where only the manifest's documents run for
anonymous callers and customers, and staff tokens still send their own.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from api.identity import Role
from tests.e2e.conftest import BIN, Server, migrated_and_serving, serve_env
from tests.e2e.test_bad_requests import LEGACY_WS, TRANSPORT_WS, answers, error_codes, start, ws_url

pytestmark = pytest.mark.elasticsearch

MAX_CHARS = 1000
PRODUCTS = "query Shelf { products(first: 1) { totalCount } }"
TRUSTED = "query Trusted { products(first: 1) { totalCount } }"
TRUSTED_BY_ID = "query ById { __typename }"
STRANGER = "query Stranger { __typename }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def a_query() -> str:
    """A document no other test (or earlier run of this one) has registered."""
    return f"query Fresh{uuid.uuid4().hex} {{ __typename }}"


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


@pytest.fixture(scope="module")
def apq_server(
    elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("apq")
    env = serve_env(elasticsearch_url, folder, PERSISTED_QUERY_MAX_CHARS=str(MAX_CHARS))
    with migrated_and_serving(env, folder / "serve.log") as server:
        yield server


@pytest.fixture(scope="module")
def trusted_server(
    elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("trusted")
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({sha(TRUSTED): TRUSTED, "by-id": TRUSTED_BY_ID}))
    env = serve_env(elasticsearch_url, folder, TRUSTED_DOCUMENTS=str(manifest))
    with migrated_and_serving(env, folder / "serve.log") as server:
        yield server


# --- automatic persisted queries ---


def test_an_unknown_hash_then_the_hash_with_its_query_then_the_hash_alone(
    apq_server: Server,
) -> None:
    query = a_query()
    url = apq_server.url + "/graphql"
    first = httpx.post(url, json={"extensions": persisted(sha(query))})
    assert first.status_code == 404
    assert first.json()["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
    assert first.headers["cache-control"] == "private, no-cache, must-revalidate"
    registered = httpx.post(url, json={"query": query, "extensions": persisted(sha(query))})
    assert registered.status_code == 200
    assert registered.json()["data"] == {"__typename": "Query"}
    later = httpx.post(url, json={"extensions": persisted(sha(query))})
    assert later.status_code == 200
    assert later.json()["data"] == {"__typename": "Query"}
    assert "cache-control" not in later.headers  # POST answers are not for caches


def test_a_persisted_query_takes_variables_and_runs_as_its_caller(apq_server: Server) -> None:
    url = apq_server.url + "/graphql"
    query = "query Named($first: Int!) { products(first: $first) { totalCount } }"
    body = {"extensions": persisted(sha(query)), "variables": {"first": 2}}
    httpx.post(url, json={**body, "query": query}).raise_for_status()
    for headers in ({}, apq_server.headers(Role.CUSTOMER, customer_id=str(uuid.uuid4()))):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 200
        assert response.json()["data"]["products"]["totalCount"] >= 0


def test_a_query_that_is_not_its_hash_is_refused_and_never_registered(apq_server: Server) -> None:
    url = apq_server.url + "/graphql"
    query, other = a_query(), a_query()
    mismatch = httpx.post(url, json={"query": query, "extensions": persisted(sha(other))})
    assert (mismatch.status_code, code(mismatch)) == (400, "PERSISTED_QUERY_HASH_MISMATCH")
    for digest in (sha(query), sha(other)):
        missing = httpx.post(url, json={"extensions": persisted(digest)})
        assert code(missing) == "PERSISTED_QUERY_NOT_FOUND"


def test_a_document_over_the_size_bound_is_refused_and_never_registered(
    apq_server: Server,
) -> None:
    url = apq_server.url + "/graphql"
    big = a_query() + "\n# " + "x" * MAX_CHARS
    refused = httpx.post(url, json={"query": big, "extensions": persisted(sha(big))})
    assert (refused.status_code, code(refused)) == (413, "PERSISTED_QUERY_TOO_LARGE")
    assert code(httpx.post(url, json={"extensions": persisted(sha(big))})) == (
        "PERSISTED_QUERY_NOT_FOUND"
    )
    # Sent without the hash, the same document runs as any other.
    assert httpx.post(url, json={"query": big}).json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    ("extensions", "status", "expected"),
    [
        (
            {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}},
            400,
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
        ),
        ({"persistedQuery": {"version": 1, "sha256Hash": "nope"}}, 400, "BAD_REQUEST"),
        ({"persistedQuery": []}, 400, "BAD_REQUEST"),
    ],
)
def test_malformed_persisted_query_fields_get_a_coded_400(
    apq_server: Server, extensions: dict[str, Any], status: int, expected: str
) -> None:
    response = httpx.post(apq_server.url + "/graphql", json={"extensions": extensions})
    assert (response.status_code, code(response)) == (status, expected)


def test_over_get_an_anonymous_answer_is_cacheable_and_a_tokens_answer_is_private(
    apq_server: Server,
) -> None:
    url = apq_server.url + "/graphql"
    params = {"extensions": json.dumps(persisted(sha(PRODUCTS)))}
    missing = httpx.get(url, params=params)
    assert (missing.status_code, code(missing)) == (404, "PERSISTED_QUERY_NOT_FOUND")
    assert missing.headers["cache-control"] == "private, no-cache, must-revalidate"
    # Apollo's link registers over GET too when useGETForHashedQueries is on.
    registered = httpx.get(url, params={**params, "query": PRODUCTS})
    assert registered.status_code == 200
    anonymous = httpx.get(url, params=params)
    assert anonymous.status_code == 200
    assert anonymous.json()["data"]["products"]["totalCount"] >= 0
    assert anonymous.headers["cache-control"] == "public, max-age=5"
    assert "Authorization" in anonymous.headers["vary"]
    for role in (Role.ADMIN, Role.STAFF, Role.CUSTOMER):
        headers = apq_server.headers(role, customer_id=str(uuid.uuid4()))
        answer = httpx.get(url, params=params, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "private, no-store"
    # An answer with errors is kept by no cache.
    failing = "query Failing { nope }"
    httpx.post(url, json={"query": failing, "extensions": persisted(sha(failing))})
    failed = httpx.get(url, params={"extensions": json.dumps(persisted(sha(failing)))})
    assert failed.json()["errors"]
    assert failed.headers["cache-control"] == "no-store"


def test_a_persisted_mutation_over_get_is_still_refused_with_405(apq_server: Server) -> None:
    url = apq_server.url + "/graphql"
    mutation = 'mutation M { cancelOrder(input: {orderId: "x"}) { __typename } }'
    admin = apq_server.headers()
    body = {"query": mutation, "extensions": persisted(sha(mutation))}
    assert httpx.post(url, json=body, headers=admin).status_code == 200
    response = httpx.get(
        url, params={"extensions": json.dumps(persisted(sha(mutation)))}, headers=admin
    )
    assert (response.status_code, code(response)) == (405, "METHOD_NOT_ALLOWED")


async def anonymous_socket(server: Server, protocol: str, payload: Any = None) -> Any:
    ws = await websockets.connect(ws_url(server), subprotocols=[protocol], open_timeout=10)
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_persisted_queries_work_over_both_websocket_protocols(
    apq_server: Server, protocol: str
) -> None:
    query = a_query()
    data = "next" if protocol == TRANSPORT_WS else "data"
    ws = await anonymous_socket(apq_server, protocol)
    try:
        await ws.send(start(protocol, "1", {"extensions": persisted(sha(query))}))
        [missing] = await answers(ws, "1")
        await ws.send(start(protocol, "2", {"query": query, "extensions": persisted(sha(query))}))
        registered = await answers(ws, "2")
        await ws.send(start(protocol, "3", {"extensions": persisted(sha(query))}))
        later = await answers(ws, "3")
    finally:
        await ws.close()
    assert missing["type"] == "error"
    assert error_codes(missing) == ["PERSISTED_QUERY_NOT_FOUND"]
    for answer in (registered, later):
        assert [m["type"] for m in answer] == [data, "complete"]
        assert answer[0]["payload"]["data"] == {"__typename": "Query"}


# --- trusted documents ---


def test_trusted_documents_run_by_hash_by_id_or_sent_in_full(trusted_server: Server) -> None:
    url = trusted_server.url + "/graphql"
    by_hash = httpx.post(url, json={"extensions": persisted(sha(TRUSTED))})
    assert by_hash.status_code == 200
    assert by_hash.json()["data"]["products"]["totalCount"] >= 0
    by_id = httpx.post(url, json={"documentId": "by-id"})
    assert by_id.json() == {
        "data": {"__typename": "Query"},
        "extensions": by_id.json()["extensions"],
    }
    in_full = httpx.post(url, json={"query": TRUSTED})
    assert in_full.status_code == 200 and in_full.json()["data"]["products"]["totalCount"] >= 0
    over_get = httpx.get(url, params={"documentId": "by-id"})
    assert over_get.status_code == 200
    assert over_get.headers["cache-control"] == "public, max-age=5"


def test_with_trusted_documents_other_documents_are_refused_for_anonymous_and_customers(
    trusted_server: Server,
) -> None:
    url = trusted_server.url + "/graphql"
    customer = trusted_server.headers(Role.CUSTOMER, customer_id=str(uuid.uuid4()))
    introspection = "query { __schema { queryType { name } } }"
    for headers in ({}, customer):
        for body in (
            {"query": STRANGER},
            {"query": introspection},
            {"query": STRANGER, "extensions": persisted(sha(STRANGER))},
        ):
            refused = httpx.post(url, json=body, headers=headers)
            assert (refused.status_code, code(refused)) == (403, "PERSISTED_QUERY_NOT_ALLOWED")
        refused = httpx.get(url, params={"query": STRANGER}, headers=headers)
        assert (refused.status_code, code(refused)) == (403, "PERSISTED_QUERY_NOT_ALLOWED")
    # Nothing was registered on the way: the hash alone is still unknown.
    missing = httpx.post(url, json={"extensions": persisted(sha(STRANGER))})
    assert (missing.status_code, code(missing)) == (404, "PERSISTED_QUERY_NOT_FOUND")


def test_with_trusted_documents_staff_and_admins_still_send_their_own(
    trusted_server: Server,
) -> None:
    url = trusted_server.url + "/graphql"
    introspection = "query { __schema { queryType { name } } }"
    for role in (Role.STAFF, Role.ADMIN):
        headers = trusted_server.headers(role)
        assert httpx.post(url, json={"query": STRANGER}, headers=headers).json()["data"] == {
            "__typename": "Query"
        }
        schema = httpx.post(url, json={"query": introspection}, headers=headers).json()
        assert schema["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_with_trusted_documents_sockets_run_only_trusted_documents_unless_staff(
    trusted_server: Server, protocol: str
) -> None:
    data = "next" if protocol == TRANSPORT_WS else "data"
    anonymous = await anonymous_socket(trusted_server, protocol)
    try:
        await anonymous.send(start(protocol, "1", {"query": STRANGER}))
        [refused] = await answers(anonymous, "1")
        await anonymous.send(start(protocol, "2", {"extensions": persisted(sha(TRUSTED))}))
        trusted = await answers(anonymous, "2")
    finally:
        await anonymous.close()
    assert refused["type"] == "error"
    assert error_codes(refused) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    assert [m["type"] for m in trusted] == [data, "complete"]
    staff = await anonymous_socket(
        trusted_server, protocol, trusted_server.init_payload(Role.STAFF)
    )
    try:
        await staff.send(start(protocol, "1", {"query": STRANGER}))
        own = await answers(staff, "1")
    finally:
        await staff.close()
    assert [m["type"] for m in own] == [data, "complete"]
    assert own[0]["payload"]["data"] == {"__typename": "Query"}


def test_a_manifest_that_cannot_be_read_stops_serve_with_its_reason(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({sha(STRANGER): TRUSTED}))
    env = serve_env(elasticsearch_url, tmp_path, TRUSTED_DOCUMENTS=str(manifest))
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    ran = subprocess.run([BIN / "bicameral", "serve"], env=env, capture_output=True, timeout=60)
    assert ran.returncode != 0
    assert b"sha256" in ran.stderr + ran.stdout
