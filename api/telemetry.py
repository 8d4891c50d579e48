"""Traces with OpenTelemetry, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

When on, a request is one trace: strawberry's tracing extension opens the
operation's span and one per resolver, and under them are the Elasticsearch
client's own spans (elasticsearch-py's built-in instrumentation) and the
write database's statements (SQLAlchemy's instrumentation, per engine). A
mutation's correlation id, when the client sent none, is its span's W3C
`traceparent`: it is stored with the events in the outbox, and the feed
worker's span for the batch that projects them links back to it
(readmodel/instruments.py), so a trace viewer goes from the write to the
moment it became searchable.

When off, nothing of this runs: no extension, the Elasticsearch client's
instrumentation is switched off, no engine is instrumented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension

if TYPE_CHECKING:
    from api.bootstrap import Bicameral

__all__ = ["correlation_id", "instrument", "middleware", "tracing_extensions"]

_provider: TracerProvider | None = None
_instrumented: set[int] = set()


def _enable(service_name: str, processor: SpanProcessor) -> TracerProvider:
    """The process's tracer provider, made on first use; `processor` added to it."""
    global _provider
    if _provider is None:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        # Set once per process (OpenTelemetry refuses a second); tracers made earlier,
        # as the Elasticsearch client's, are proxies that follow it from now on.
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            trace.set_tracer_provider(provider)
        _provider = provider
    _provider.add_span_processor(processor)
    return _provider


def disable() -> None:
    """Stop adding tracing to apps built from now on (tests that turned it on)."""
    global _provider
    _provider = None


def instrument(app: Bicameral, processor: SpanProcessor | None = None) -> bool:
    """Trace `app` if its settings name an OTLP endpoint (or a test gives a span
    processor); whether tracing is on. Call before building its schema."""
    settings = app.settings
    if processor is None and _provider is None:
        if not settings.otel_exporter_otlp_endpoint:
            # elasticsearch-py traces whenever OpenTelemetry is importable; off means off.
            _search_tracing(app, enabled=False)
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    if processor is not None:
        _enable(settings.otel_service_name, processor)
    _search_tracing(app, enabled=True)
    _trace_engine(app)
    return True


def _search_tracing(app: Bicameral, *, enabled: bool) -> None:
    # The client keeps its instrumentation switch on this attribute (elasticsearch-py 8.13+).
    otel = getattr(app.search, "_otel", None)
    if otel is not None and otel.tracer is not None:
        otel.enabled = enabled


def _trace_engine(app: Bicameral) -> None:
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    engine = app.engine.sync_engine
    if id(engine) in _instrumented:
        return
    _instrumented.add(id(engine))
    usage = metrics.get_meter(__name__).create_up_down_counter("db.client.connections.usage")
    # The instrumentation package leaves EngineTracer's __init__ unannotated.
    EngineTracer(trace.get_tracer("sqlalchemy"), engine, usage)  # type: ignore[no-untyped-call]


def tracing_extensions() -> list[type[SchemaExtension] | Any]:
    """strawberry's tracing extension when tracing is on, else nothing (it wraps
    every resolver, which a query should not pay for when nobody traces)."""
    if _provider is None:
        return []
    # Resolver arguments carry customers' emails and names: they stay out of traces.
    return [lambda: OpenTelemetryExtension(arg_filter=lambda args, info: {})]


def correlation_id() -> str | None:
    """The current span as a W3C traceparent, to store with a command's events;
    None when nothing is traced (the command service then makes a random one)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or _provider is None:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def middleware() -> list[Middleware]:
    """When tracing is on: an HTTP request that carries a W3C `traceparent` (from
    a gateway or a traced client) continues that trace instead of starting one."""
    return [Middleware(_ContinueTrace)] if _provider is not None else []


class _ContinueTrace:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Not a WebSocket's: its operations would all share the handshake's trace.
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        if scope["type"] != "http" or not carrier:
            await self.app(scope, receive, send)
            return
        token = context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
