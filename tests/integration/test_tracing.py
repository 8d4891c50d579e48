"""Traces, when configured: a request's spans reach Elasticsearch and the write
database, and the feed's batch span links to the mutation whose events it projects.
Recorded with OpenTelemetry's in-memory exporter, over real databases and a real node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from strawberry.extensions.tracing import OpenTelemetryExtension

from api import telemetry
from api.app import create_app
from api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.bootstrap import Bicameral
from api.identity import Role
from api.schema import build_schema
from writemodel.tables import events

pytestmark = pytest.mark.elasticsearch

CREATE = """
mutation Create {
  createProduct(input: {sku: "TR-1", name: "Traced mug", price: 100, currency: "EUR"}) {
    __typename
  }
}
"""
SEARCH = 'query Search { products(search: "mug") { totalCount } }'


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, SimpleSpanProcessor]]:
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    try:
        yield memory, processor
    finally:
        processor.shutdown()
        telemetry.disable()


def _http(app: Bicameral) -> httpx.AsyncClient:
    settings = app.settings
    token = LocalSigningKey.load_or_create(settings.data_dir).token(
        role=Role.ADMIN,
        subject="tests",
        issuer=settings.auth_issuer or LOCAL_ISSUER,
        audience=settings.auth_audience or LOCAL_AUDIENCE,
        role_claim=settings.auth_role_claim,
        customer_claim=settings.auth_customer_claim,
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(bicameral=app)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.fixture
async def traced(
    app: Bicameral, exporter: tuple[InMemorySpanExporter, SimpleSpanProcessor]
) -> AsyncIterator[tuple[Bicameral, InMemorySpanExporter]]:
    memory, processor = exporter
    assert telemetry.instrument(app, processor)
    yield app, memory


def _in_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


async def test_a_traced_mutation_reaches_the_database_and_its_projection_links_back(
    traced: tuple[Bicameral, InMemorySpanExporter],
) -> None:
    app, memory = traced
    async with _http(app) as http:
        answer = await http.post("/graphql", json={"query": CREATE})
        assert answer.json()["data"]["createProduct"]["__typename"] == "CreateProductSuccess"
        await app.worker.run_until_caught_up()
        found = await http.post("/graphql", json={"query": SEARCH})
        assert found.json()["data"]["products"]["totalCount"] == 1
    spans = memory.get_finished_spans()

    mutation = next(s for s in spans if s.name == "GraphQL Query: Create")
    assert mutation.context is not None
    in_mutation = _in_trace(spans, mutation.context.trace_id)
    assert any(
        (s.attributes or {}).get("db.system") in ("sqlite", "postgresql") for s in in_mutation
    ), [s.name for s in in_mutation]
    # The events carry the mutation's trace as their correlation id...
    async with app.engine.connect() as conn:
        stored = (await conn.execute(select(events.c.correlation_id))).scalars().all()
    assert stored and all(c.startswith(f"00-{mutation.context.trace_id:032x}-") for c in stored)
    # ... and the batch that projected them links to it.
    batch = next(
        s
        for s in spans
        if s.name == "feed batch" and (s.attributes or {}).get("bicameral.feed.events")
    )
    assert [link.context.trace_id for link in batch.links] == [mutation.context.trace_id]
    assert batch.context is not None
    assert any(
        (s.attributes or {}).get("db.system") == "elasticsearch"
        for s in _in_trace(spans, batch.context.trace_id)
    )
    search = next(s for s in spans if s.name == "GraphQL Query: Search")
    assert search.context is not None
    in_search = _in_trace(spans, search.context.trace_id)
    assert any((s.attributes or {}).get("db.system") == "elasticsearch" for s in in_search)
    # Resolver arguments (emails, names) stay out of traces.
    assert not any(key.startswith("graphql.param.") for s in spans for key in (s.attributes or {}))


async def test_a_request_carrying_a_traceparent_continues_that_trace(
    traced: tuple[Bicameral, InMemorySpanExporter],
) -> None:
    app, memory = traced
    trace_id, parent = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    async with _http(app) as http:
        answer = await http.post(
            "/graphql",
            json={"query": SEARCH},
            headers={"traceparent": f"00-{trace_id:032x}-{parent:016x}-01"},
        )
        other = await http.post("/graphql", json={"query": SEARCH})
    assert answer.status_code == other.status_code == 200
    searches = [s for s in memory.get_finished_spans() if s.name == "GraphQL Query: Search"]

    assert len(searches) == 2
    continued, fresh = searches
    assert continued.context is not None and continued.parent is not None
    assert continued.context.trace_id == trace_id
    assert continued.parent.span_id == parent
    assert fresh.context is not None and fresh.context.trace_id != trace_id


async def test_without_an_endpoint_nothing_is_traced(app: Bicameral) -> None:
    assert app.settings.otel_exporter_otlp_endpoint == ""
    assert not telemetry.instrument(app)
    schema = build_schema()

    async with _http(app) as http:
        answer = await http.post("/graphql", json={"query": CREATE})
    async with app.engine.connect() as conn:
        stored = (await conn.execute(select(events.c.correlation_id))).scalars().all()

    assert answer.json()["data"]["createProduct"]["__typename"] == "CreateProductSuccess"
    assert not any(
        isinstance(e, type) and issubclass(e, OpenTelemetryExtension) for e in schema.extensions
    )
    assert telemetry.tracing_extensions() == []
    assert telemetry.middleware() == []
    assert app.search._otel.enabled is False  # type: ignore[attr-defined]
    assert stored and not any(c.startswith("00-") for c in stored)
