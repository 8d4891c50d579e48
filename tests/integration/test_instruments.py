"""/metrics counts requests by operation and outcome, mutations by error code, feed
batches and bulk retries, with prometheus_client's objects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from prometheus_client import REGISTRY
from strawberry.types import ExecutionResult

from api.app import create_app
from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.bootstrap import Bicameral
from api.context import Context
from api.identity import Identity, Role
from api.schema import build_schema
from domain import commands as c
from readmodel.bulk import BulkError, BulkWriter, Write
from readmodel.projections import IndexDocument
from writemodel.access import SYSTEM

pytestmark = pytest.mark.elasticsearch

CREATE = """
mutation Create($sku: String!) {
  createProduct(input: {sku: $sku, name: "Mug", price: 100, currency: "EUR"}) {
    __typename
    ... on Error { code }
  }
}
"""


@pytest.fixture
async def http(app: Bicameral) -> AsyncIterator[httpx.AsyncClient]:
    settings = app.settings
    token = LocalSigningKey.load_or_create(settings.data_dir).token(
        role=Role.ADMIN,
        subject="tests",
        issuer=settings.auth_issuer or LOCAL_ISSUER,
        audience=settings.auth_audience or LOCAL_AUDIENCE,
        role_claim=settings.auth_role_claim,
        customer_claim=settings.auth_customer_claim,
    )
    transport = httpx.ASGITransport(app=create_app(bicameral=app))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def _sample(scrape: str, name: str, **labels: str) -> float:
    """The value of one sample in a scrape (0 when it is not there yet)."""
    for line in scrape.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return 0.0


async def _scrape(http: httpx.AsyncClient) -> str:
    return (await http.get("/metrics")).text


async def test_requests_are_counted_by_operation_name_type_and_outcome(
    http: httpx.AsyncClient,
) -> None:
    count = "bicameral_graphql_request_duration_seconds_count"
    named = {"operation": "Probe", "type": "query", "outcome": "ok"}
    anonymous = {"operation": "(anonymous)", "type": "query", "outcome": "ok"}
    rejected = {"operation": "(unknown)", "type": "unknown", "outcome": "rejected"}
    before = await _scrape(http)

    for _ in range(3):
        await http.post("/graphql", json={"query": "query Probe { __typename }"})
    await http.post("/graphql", json={"query": "{ __typename }"})
    await http.post("/graphql", json={"query": "query Broken {"})
    answer = await http.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "Elsewhere"}
    )
    after = await _scrape(http)

    # A name the document does not declare never becomes a label.
    assert answer.json()["errors"]
    assert _sample(after, count, **named) - _sample(before, count, **named) == 3
    assert _sample(after, count, **anonymous) - _sample(before, count, **anonymous) == 1
    assert _sample(after, count, **rejected) - _sample(before, count, **rejected) == 1
    assert 'bicameral_graphql_request_duration_seconds_bucket{le="0.005",operation="Probe"' in after
    assert "Elsewhere" not in after


async def test_mutations_are_counted_by_command_and_error_code(
    http: httpx.AsyncClient,
) -> None:
    ok = {"command": "CreateProduct", "outcome": "ok"}
    taken = {"command": "CreateProduct", "outcome": "SKU_TAKEN"}
    before = await _scrape(http)

    first = await http.post("/graphql", json={"query": CREATE, "variables": {"sku": "MX-1"}})
    again = await http.post("/graphql", json={"query": CREATE, "variables": {"sku": "MX-1"}})
    after = await _scrape(http)

    assert first.json()["data"]["createProduct"]["__typename"] == "CreateProductSuccess"
    assert again.json()["data"]["createProduct"]["code"] == "SKU_TAKEN"
    name = "bicameral_mutations_total"
    assert _sample(after, name, **ok) - _sample(before, name, **ok) == 1
    assert _sample(after, name, **taken) - _sample(before, name, **taken) == 1
    mutation = {"operation": "Create", "type": "mutation", "outcome": "ok"}
    requests = "bicameral_graphql_request_duration_seconds_count"
    assert _sample(after, requests, **mutation) - _sample(before, requests, **mutation) == 2


async def test_feed_batches_are_measured_by_size_and_duration(
    app: Bicameral, http: httpx.AsyncClient
) -> None:
    await app.worker.run_until_caught_up()
    before = await _scrape(http)
    for n in range(3):
        await http.post("/graphql", json={"query": CREATE, "variables": {"sku": f"MB-{n}"}})
    await app.worker.run_until_caught_up()
    after = await _scrape(http)

    events = _sample(after, "bicameral_feed_batch_events_sum") - _sample(
        before, "bicameral_feed_batch_events_sum"
    )
    batches = _sample(after, "bicameral_feed_batch_duration_seconds_count") - _sample(
        before, "bicameral_feed_batch_duration_seconds_count"
    )
    # Three commands, one event each; the worker may take them in one batch or several.
    assert events == 3
    assert 1 <= batches <= 3
    assert "bicameral_subscribers " in after
    assert "bicameral_bulk_retries_total " in after
    assert "_created" not in after


async def test_bulk_retries_are_counted_until_the_writer_gives_up() -> None:
    # A port nothing listens on: every attempt gets no answer, as during an outage.
    client = AsyncElasticsearch("http://127.0.0.1:9", request_timeout=1, retry_on_timeout=False)
    writer = BulkWriter(client, max_attempts=3, base_delay=0.001, max_delay=0.01)
    before = _retries()
    try:
        with pytest.raises(BulkError, match="gave up after 3 attempts"):
            await writer.write_all([Write("nowhere", [IndexDocument("1", 1, {})])])
    finally:
        await client.close()

    assert _retries() - before == 2


def _retries() -> float:
    return REGISTRY.get_sample_value("bicameral_bulk_retries_total") or 0.0


async def test_a_subscription_is_timed_apart_from_the_request_latencies(app: Bicameral) -> None:
    schema = build_schema()
    context = Context(app=app, request=None, identity=Identity(Role.STAFF, subject="tests"))
    ended = {"operation": "Watch", "outcome": "ok"}
    subscriptions = "bicameral_graphql_subscription_duration_seconds_count"
    before = REGISTRY.get_sample_value(subscriptions, ended) or 0.0

    stream = await schema.subscribe(
        "subscription Watch { changes { position } }", context_value=context
    )
    assert not isinstance(stream, ExecutionResult)
    first = asyncio.create_task(anext(stream))
    await app.commands.execute(
        c.CreateProduct(sku="MS-1", name="Watched", price=1, currency="EUR"), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    async with asyncio.timeout(10):
        notification = await first
    await stream.aclose()

    assert notification.errors is None and notification.data is not None
    assert (REGISTRY.get_sample_value(subscriptions, ended) or 0.0) - before == 1
    assert not [
        m
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name.startswith("bicameral_graphql_request_duration")
        and s.labels.get("type") == "subscription"
    ]
