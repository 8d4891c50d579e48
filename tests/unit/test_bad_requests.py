"""Every malformed HTTP request to /graphql gets a 4xx with a GraphQL-shaped body and a
stable code, never a 500. In process, over the real app: nothing here needs a service,
since every request is refused before a resolver runs (or asks only `__typename`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.requests import MAX_JSON_DEPTH, RequestRefused, load_json, select_operation
from api.settings import Settings

LIMIT = Settings().max_body_bytes  # the default, 1 MiB


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: nothing is started, and nothing below needs a service.
    app = create_app(Settings(data_dir=tmp_path, max_body_bytes=LIMIT))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await close(app)


async def close(app: Any) -> None:
    """What `create_app` built and nothing started: the engine and the client."""
    await app.state.bicameral.search.close()
    await app.state.bicameral.engine.dispose()


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The response is a GraphQL-shaped refusal with `status` and `code`; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"errors"}
    [error] = body["errors"]
    assert error["extensions"] == {"code": code}
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The body without `extensions` (the cost report rides on every answer)."""
    body: dict[str, Any] = response.json()
    body.pop("extensions", None)
    return body


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def post(
    client: httpx.AsyncClient, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return await client.post("/graphql", content=body, headers={"content-type": content_type})


# --- the body is not JSON this service reads ---


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{'query': '{__typename}'}",
        b'{"query": "{__typename}"} trailing',
        b"\xff\xfe\x00",
        b'{"query": "\xff"}',
        b'{"query": "{__typename}", "variables": {"a": "\xed\xa0\x80"}}',  # CESU surrogate
        b'\xef\xbb\xbf{"query": "{__typename}"}',  # a byte-order mark
        b'{"query": "{__typename}", "variables": {"a": NaN}}',
        b'{"query": "{__typename}", "variables": {"a": -Infinity}}',
        b'{"query": "{__typename}", "variables": {"a": ' + b"9" * 5000 + b"}}",
    ],
    ids=lambda body: repr(body[:30]),
)
async def test_a_body_that_is_not_utf8_json_is_a_bad_request(
    client: httpx.AsyncClient, body: bytes
) -> None:
    refused(await post(client, body), 400, "BAD_REQUEST")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1_000, 100_000])
async def test_json_nested_too_deep_is_a_bad_request_whatever_the_depth(
    client: httpx.AsyncClient, depth: int
) -> None:
    body = f'{{"query": "{{__typename}}", "variables": {{"a": {nested(depth)}}}}}'
    message = refused(await post(client, body.encode()), 400, "BAD_REQUEST")
    assert "nested deeper" in message


async def test_json_nested_up_to_the_bound_is_read(client: httpx.AsyncClient) -> None:
    # The request object and `variables` are two of the levels.
    body = f'{{"query": "{{__typename}}", "variables": {{"a": {nested(MAX_JSON_DEPTH - 2)}}}}}'
    response = await post(client, body.encode())
    assert response.status_code == 200, response.text
    assert _answer(response) == {"data": {"__typename": "Query"}}


# --- JSON of the wrong shape ---


@pytest.mark.parametrize(
    "body",
    [
        '"hello"',
        "5",
        "3.5",
        "true",
        "null",
        "[]",
        '[{"query": "{__typename}"}]',
        "{}",
        '{"query": null}',
        '{"query": ""}',
        '{"query": "   "}',
        '{"query": 5}',
        '{"query": ["{__typename}"]}',
        '{"query": {"a": 1}}',
        '{"query": "{__typename}", "variables": [1]}',
        '{"query": "{__typename}", "variables": "{}"}',
        '{"query": "{__typename}", "variables": 5}',
        '{"query": "{__typename}", "operationName": 5}',
        '{"query": "{__typename}", "operationName": ["A"]}',
        '{"query": "{__typename}", "operationName": {}}',
        '{"query": "{__typename}", "extensions": 5}',
        '{"query": "{__typename}", "extensions": "x"}',
        '{"query": "{__typename}", "extensions": []}',
    ],
)
async def test_json_that_is_not_a_graphql_request_is_a_bad_request(
    client: httpx.AsyncClient, body: str
) -> None:
    refused(await post(client, body.encode()), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"query": ""},
        {"query": "{__typename}", "variables": "5"},
        {"query": "{__typename}", "variables": "{"},
        {"query": "{__typename}", "variables": nested(200)},
        {"query": "{__typename}", "extensions": "[]"},
    ],
)
async def test_a_get_that_is_not_a_graphql_request_is_a_bad_request(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/graphql", params=params, headers={"accept": "application/json"})
    refused(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "json"],
)
async def test_a_body_that_is_not_declared_json_is_unsupported(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await post(client, b'{"query": "{__typename}"}', content_type)
    refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_json_with_a_charset_is_json(client: httpx.AsyncClient) -> None:
    response = await post(client, b'{"query": "{__typename}"}', "application/json; charset=utf-8")
    assert _answer(response) == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_other_methods_are_not_allowed(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/graphql", content=b'{"query": "{__typename}"}')
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    if method != "HEAD":
        refused(response, 405, "METHOD_NOT_ALLOWED")


# --- size ---


async def test_a_body_over_the_limit_is_too_large(client: httpx.AsyncClient) -> None:
    body = json.dumps({"query": "{__typename}", "variables": {"a": "x" * LIMIT}}).encode()
    refused(await post(client, body), 413, "REQUEST_TOO_LARGE")


async def test_a_chunked_body_over_the_limit_is_too_large(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{__typename}", "variables": {"a": "'
        for _ in range(LIMIT // 512 + 1):
            yield b"x" * 512
        yield b'"}}'

    response = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    refused(response, 413, "REQUEST_TOO_LARGE")


async def test_a_body_just_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    body = json.dumps({"query": "{__typename}", "variables": {"a": ""}}).encode()
    body = body.replace(b'""', b'"' + b"x" * (LIMIT - len(body)) + b'"')
    assert len(body) == LIMIT
    assert _answer(await post(client, body)) == {"data": {"__typename": "Query"}}


# --- which operation ---


@pytest.mark.parametrize(
    "query",
    [
        "query A { __typename } query B { __typename }",
        "query A { __typename } mutation B { __typename }",
        "{ __typename } query B { __typename }",
        "query A { __typename } subscription B { changes { id } }",
    ],
)
async def test_several_operations_without_an_operation_name_are_refused(
    client: httpx.AsyncClient, query: str
) -> None:
    for body in ({"query": query}, {"query": query, "operationName": None}):
        response = await client.post("/graphql", json=body)
        refused(response, 400, "OPERATION_NAME_REQUIRED")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("query A { __typename }", "B"),
        ("query A { __typename } query B { __typename }", "C"),
        ("{ __typename }", "A"),
        ("query A { __typename }", "a"),
    ],
)
async def test_an_operation_name_that_names_no_operation_is_refused(
    client: httpx.AsyncClient, query: str, name: str
) -> None:
    response = await client.post("/graphql", json={"query": query, "operationName": name})
    assert name in refused(response, 400, "OPERATION_NOT_FOUND")


async def test_the_named_operation_runs(client: httpx.AsyncClient) -> None:
    query = "query A { a: __typename } query B { b: __typename }"
    response = await client.post("/graphql", json={"query": query, "operationName": "B"})
    assert _answer(response) == {"data": {"b": "Query"}}


async def test_a_document_without_an_operation_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    query = "fragment F on Query { __typename }"
    refused(await client.post("/graphql", json={"query": query}), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("subscription { changes { id } }", None),
        ("subscription S { changes { id } }", "S"),
        ("query Q { __typename } subscription S { changes { id } }", "S"),
        ("subscription { nope }", None),
    ],
)
async def test_a_subscription_over_http_is_told_to_use_the_websocket(
    client: httpx.AsyncClient, query: str, name: str | None
) -> None:
    for method in ("POST", "GET"):
        body = {"query": query, "operationName": name}
        if method == "POST":
            response = await client.post("/graphql", json=body)
        else:
            params = {k: v for k, v in body.items() if v is not None}
            response = await client.get("/graphql", params=params)
        assert "WebSocket" in refused(response, 400, "SUBSCRIPTION_NEEDS_WEBSOCKET")


async def test_a_mutation_over_get_is_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { __typename }"})
    refused(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


async def test_a_query_over_get_runs(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{ __typename }"})
    assert _answer(response) == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "query",
    [
        "{ f(a: " + "[" * 3000 + "]" * 3000 + ") }",
        "{ a " + "{ a " * 2000 + "}" * 2001,
    ],
    ids=["list-literal", "selections"],
)
async def test_a_document_nested_past_the_parser_is_a_bad_request_or_an_error(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code in (200, 400), response.text
    errors = response.json()["errors"]
    assert errors and errors[0]["extensions"]["code"] != "INTERNAL_SERVER_ERROR"


@pytest.mark.parametrize("query", ["{ __typename", "# only a comment", "query A { a(b: ) }"])
async def test_a_syntax_error_is_still_a_graphql_error(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_a_request_without_graphiql_or_a_query_is_a_graphql_shaped_404(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(data_dir=tmp_path, graphiql=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    await close(app)
    refused(response, 404, "NOT_FOUND")


# --- the helpers on their own ---


def test_load_json_reads_what_json_allows_within_the_depth() -> None:
    assert load_json(b'{"a": [1, 2.5, "\\u00e9", null, true]}') == {"a": [1, 2.5, "é", None, True]}
    assert load_json('"\\ud800"') == "\ud800"  # lone surrogates are text's rules, not JSON's


def test_select_operation_follows_the_graphql_spec() -> None:
    from strawberry.types.graphql import OperationType

    assert select_operation("{ a }", None) is OperationType.QUERY
    assert select_operation("mutation M { a } query Q { b }", "M") is OperationType.MUTATION
    assert select_operation("{", None).message.startswith("Syntax Error")  # type: ignore[union-attr]
    with pytest.raises(RequestRefused) as many:
        select_operation("query A { a } query B { b }", None)
    assert many.value.code == "OPERATION_NAME_REQUIRED"
