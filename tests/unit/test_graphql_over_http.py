"""The GraphQL-over-HTTP spec, case by case, in process: what graphql-http's audit
checks (tests/e2e/test_graphql_over_http_audit.py runs the audit itself against
`bicameral serve`), one test per case, named by the audit's id so that a failure
there is found here. Plus the media type choice and the status of request errors
on their own (api/media.py). Nothing here needs a service: every request asks
only `__typename` or introspection, or is refused before a resolver runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.media import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    accepts_multipart_subscription,
    request_error_status,
    response_media_type,
)
from api.settings import Settings
from tests.unit.test_bad_requests import close

GR = {"accept": GRAPHQL_RESPONSE_JSON}
AJ = {"accept": JSON}
POST_JSON = {"content-type": JSON}
TYPENAME = {"query": "{ __typename }"}
UNKNOWN_FIELD = {"query": "{ 8f31403dfe404bccbb0e835f2629c6a7 }"}
COERCE = {"query": "query CoerceFailure($id: ID!){ __typename }", "variables": {"id": None}}
TYPE_QUERY = "query Type($name: String!) { __type(name: $name) { name } }"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await close(app)


@dataclass(frozen=True)
class Audit:
    """One request and what the spec says of its answer."""

    id: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None  # JSON, or bytes as they are; None sends no body
    params: dict[str, str] | None = None
    status: int | tuple[int, int] = 200
    content_type: str | None = None
    no_errors: bool = False
    no_data: bool = False


AUDITS = [
    # Media types
    Audit("22EB", headers={**POST_JSON, **GR}, body=TYPENAME, content_type=GRAPHQL_RESPONSE_JSON),
    Audit("4655", headers={**POST_JSON, **AJ}, body=TYPENAME, content_type=JSON),
    Audit("47DE", headers={**POST_JSON, "accept": "*/*"}, body=TYPENAME, content_type=JSON),
    Audit("80D8", headers=POST_JSON, body=TYPENAME, content_type=JSON),
    Audit(
        "BF61",
        headers={"content-type": "application/json; charset=utf-8"},
        body={"query": '{ __type(name: "Run🏃Swim🏊") { name } }'},
    ),
    # Requests
    Audit("5A70", method="GET", params={"query": "{ __typename }"}),
    Audit(
        "9C48", method="GET", headers=GR, params={"query": "mutation { __typename }"}, status=405
    ),
    Audit("9ABE", headers={}, body=json.dumps(TYPENAME).encode(), status=(400, 499)),
    Audit("A5BF", headers=POST_JSON, body=None, status=400),
    Audit("423L", headers={**POST_JSON, **GR}, body={"notquery": "{ __typename }"}, status=400),
    *(
        Audit(f"LKJ{n}", headers=POST_JSON, body={"query": bad}, status=400)
        for n, bad in enumerate([{"obj": "ect"}, 0, False, ["array"]])
    ),
    Audit("13EE", headers={**POST_JSON, **AJ}, body=TYPENAME, no_errors=True),
    *(
        Audit(f"6C0{n}", headers=POST_JSON, body={**TYPENAME, "operationName": bad}, status=400)
        for n, bad in enumerate([{"obj": "ect"}, 0, False, ["array"]])
    ),
    Audit(
        "B8B3",
        headers={**POST_JSON, **AJ},
        body={"operationName": "Query", "query": "query Query { __typename }"},
        no_errors=True,
    ),
    *(
        Audit(f"{prefix}{n}", headers={**POST_JSON, **accept}, body={**TYPENAME, name: None})
        for n, name in enumerate(["variables", "operationName", "extensions"])
        for prefix, accept in (("94B", GR), ("022", AJ))
    ),
    *(
        Audit(f"{prefix}{n}", headers=POST_JSON, body={**TYPENAME, name: bad}, status=400)
        for prefix, name in (("476", "variables"), ("58B", "extensions"))
        for n, bad in enumerate(["string", 0, False, ["array"]])
    ),
    Audit(
        "28B9",
        headers={**POST_JSON, **AJ},
        body={"query": TYPE_QUERY, "variables": {"name": "sometype"}},
        no_errors=True,
    ),
    *(
        Audit(
            audit_id,
            method="GET",
            headers=accept,
            params={"query": TYPE_QUERY, "variables": json.dumps({"name": "sometype"})},
            no_errors=True,
        )
        for audit_id, accept in (("D6D5", GR), ("6A70", AJ))
    ),
    Audit(
        "1B7A",
        headers={**POST_JSON, **AJ},
        body={**TYPENAME, "extensions": {"some": "value"}},
        no_errors=True,
    ),
    # Request errors
    Audit("BCF8", headers={**POST_JSON, **AJ}, body=b'{ "not a JSON', status=400),
    Audit("B7N8", headers={**POST_JSON, **GR}, body=b'{ "not a JSON', status=400),
    Audit("3E3A", headers=POST_JSON, body={"qeury": "{ __typename }"}, status=400),
    # Under application/json a GraphQL answer is 200, errors or not...
    Audit("572B", headers={**POST_JSON, **AJ}, body={"query": "{"}, content_type=JSON),
    Audit("FDE2", headers={**POST_JSON, **AJ}, body=UNKNOWN_FIELD, content_type=JSON),
    Audit("7B9B", headers={**POST_JSON, **AJ}, body=COERCE, content_type=JSON),
    # ...under application/graphql-response+json a request error is 400 without data.
    *(
        Audit(
            audit_id,
            headers={**POST_JSON, **GR},
            body=body,
            status=400,
            content_type=GRAPHQL_RESPONSE_JSON,
            no_data=True,
        )
        for audit_id, body in (("556A", {"query": "{"}), ("74FF", UNKNOWN_FIELD), ("86EE", COERCE))
    ),
]


@pytest.mark.parametrize("audit", AUDITS, ids=lambda audit: audit.id)
async def test_each_graphql_over_http_audit_holds(client: httpx.AsyncClient, audit: Audit) -> None:
    content = audit.body if isinstance(audit.body, bytes) else None
    if audit.body is not None and content is None:
        content = json.dumps(audit.body).encode()
    response = await client.request(
        audit.method, "/graphql", headers=audit.headers, content=content, params=audit.params
    )

    low, high = audit.status if isinstance(audit.status, tuple) else (audit.status,) * 2
    assert low <= response.status_code <= high, response.text
    if audit.content_type is not None:
        assert response.headers["content-type"] == audit.content_type
    body = response.json()
    if audit.no_errors:
        assert "errors" not in body, body
    if audit.no_data:
        assert "data" not in body, body
        assert body["errors"][0]["extensions"]["code"]


async def test_every_refusal_is_sent_as_the_media_type_asked_for(
    client: httpx.AsyncClient,
) -> None:
    for accept in (GRAPHQL_RESPONSE_JSON, JSON):
        refusals = [
            await client.post("/graphql", content=b"{}", headers={"accept": accept}),
            await client.post(
                "/graphql", json={"query": "{ a }", "variables": 1}, headers={"accept": accept}
            ),
            await client.put("/graphql", headers={"accept": accept}),
            await client.get(
                "/graphql", params={"query": "mutation { __typename }"}, headers={"accept": accept}
            ),
        ]
        for response in refusals:
            assert 400 <= response.status_code < 500
            assert response.headers["content-type"] == accept
            assert set(response.json()) == {"errors"}


async def test_a_caller_the_policy_refuses_gets_401_without_data_when_it_asks_for_the_spec(
    client: httpx.AsyncClient,
) -> None:
    query = {"query": "{ customers { totalCount } }"}  # staff only; this caller is anonymous

    spec = await client.post("/graphql", json=query, headers=GR)
    legacy = await client.post("/graphql", json=query, headers=AJ)

    assert spec.status_code == 401
    assert spec.headers["www-authenticate"] == "Bearer"
    assert "data" not in spec.json()
    assert spec.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # application/json keeps its 200, as clients of it expect; nothing ran, so no `data`.
    assert legacy.status_code == 200
    assert "data" not in legacy.json()


async def test_a_subscription_without_the_multipart_accept_is_told_both_ways_to_subscribe(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/graphql", json={"query": "subscription { changes { id } }"})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SUBSCRIPTION_NEEDS_WEBSOCKET"
    assert "multipart/mixed;subscriptionSpec=1.0" in error["message"]


# --- api/media.py on its own ---


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/html", JSON),
        ("application/graphql-response+json", GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        ("application/json, application/graphql-response+json", GRAPHQL_RESPONSE_JSON),
        ("application/json, application/graphql-response+json;q=0.5", JSON),
        ("application/graphql-response+json;q=0", JSON),
        ("Application/GraphQL-Response+JSON", GRAPHQL_RESPONSE_JSON),
        (
            "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,"
            "application/graphql-response+json,application/json;q=0.9",
            GRAPHQL_RESPONSE_JSON,
        ),
        ("application/graphql-response+json;q=oops", JSON),
    ],
)
def test_the_response_media_type_is_the_one_the_client_prefers(
    accept: str | None, chosen: str
) -> None:
    assert response_media_type(accept) == chosen


@pytest.mark.parametrize(
    ("accept", "multipart"),
    [
        ("multipart/mixed;subscriptionSpec=1.0", True),
        ('multipart/mixed;boundary="graphql";subscriptionSpec="1.0",application/json', True),
        ("application/json, multipart/mixed; subscriptionSpec=1.0", True),
        ("multipart/mixed;boundary=-;subscriptionSpec=1.0", False),
        ("multipart/mixed;deferSpec=20220824", False),
        ("multipart/mixed;subscriptionSpec=1.0;q=0", False),
        ("application/json", False),
        (None, False),
    ],
)
def test_the_multipart_subscription_protocol_is_recognised_anywhere_in_accept(
    accept: str | None, multipart: bool
) -> None:
    assert accepts_multipart_subscription(accept) is multipart


def _error(code: str, **more: Any) -> dict[str, Any]:
    return {"message": "m", "extensions": {"code": code}, **more}


@pytest.mark.parametrize(
    ("response", "status"),
    [
        ({"data": None, "errors": [_error("GRAPHQL_VALIDATION_FAILED")]}, 400),
        ({"data": None, "errors": [_error("TOO_MANY_ALIASES"), _error("TOO_MANY_FIELDS")]}, 400),
        ({"data": None, "errors": [_error("UNAUTHENTICATED")]}, 401),
        ({"data": None, "errors": [_error("FORBIDDEN")]}, 403),
        ({"data": None, "errors": [_error("RATE_LIMITED")]}, 429),
        ({"data": None, "errors": [_error("INTERNAL_SERVER_ERROR")]}, 500),
        # Not request errors: it ran (a deadline), or an error has a path (a field's).
        ({"data": None, "errors": [_error("DEADLINE_EXCEEDED")]}, None),
        ({"data": None, "errors": [_error("INTERNAL_SERVER_ERROR", path=["a"])]}, None),
        ({"data": {"a": None}, "errors": [_error("BAD_USER_INPUT", path=["a"])]}, None),
        ({"data": {"a": 1}}, None),
    ],
)
def test_a_request_error_gets_its_status_and_anything_else_none(
    response: dict[str, Any], status: int | None
) -> None:
    assert request_error_status(response) == status
