"""The HTTP face: GraphQL (GraphiQL on GET), /healthz, /readyz, the pages (api/pages.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from api import demo, telemetry
from api.auth import verifier_for
from api.bootstrap import Bicameral, build
from api.context import Context
from api.http import GraphQLView
from api.metrics import metrics_endpoint, metrics_process_exited
from api.pages import graphiql_response, page_routes
from api.persisted import PersistedDocuments
from api.schema import build_schema
from api.settings import Settings
from api.shutdown import exit_after_signal

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class BicameralGraphQL(GraphQLView):
    def __init__(self, app: Bicameral, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bicameral = app

    async def get_context(self, request: Any, response: Any) -> Context:
        context = Context(app=self.bicameral, request=request, response=response)
        # A WebSocket's identity is settled by its connection_init (api/websocket.py).
        if request.scope["type"] == "http":
            context.identity = await self.request_identity(request.headers.get("authorization"))
        return context

    async def render_graphql_ide(self, request: Any) -> Response:
        return graphiql_response()  # assets served locally when fetched (api/pages.py)


async def _healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _readyz(app: Bicameral) -> Any:
    async def readyz(_: Request) -> Response:
        """Ready by the node's role (api/bootstrap.py, `readiness`), which it names."""
        problems = await app.readiness()
        if problems:
            return JSONResponse(
                {"status": "unavailable", "role": app.role, "problems": problems},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "role": app.role})

    return readyz


def create_app(
    settings: Settings | None = None,
    *,
    bicameral: Bicameral | None = None,
    load_demo: bool = False,
) -> Starlette:
    app = bicameral or build(settings)
    settings = app.settings
    telemetry.instrument(app)  # traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set
    graphql = BicameralGraphQL(
        app,
        schema=build_schema(
            mask_errors=settings.mask_errors,
            introspection=bool(settings.introspection),
            role=settings.node_role,
        ),
        graphql_ide="graphiql" if settings.graphiql else None,
        # Both protocols (graphql-transport-ws and the legacy graphql-ws) are on by
        # default; this adds the legacy protocol's keep-alive messages.
        keep_alive=True,
        keep_alive_interval=15,
        max_body_bytes=settings.max_body_bytes,
        verifier=verifier_for(settings),
        persisted=PersistedDocuments.from_settings(settings),
        # Pages on these origins may open a WebSocket too (non-browser clients send no Origin).
        allowed_origins=list(settings.allowed_origins),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Requests get SHUTDOWN_TIMEOUT, stopping the worker and the hub up to 10 s more.
        exit_after_signal(settings.shutdown_timeout + 15)
        await app.start()
        if load_demo:
            await demo.load_demo(app)
        log.info(
            "bicameral ready: role=%s write=%s search=%s worker=%s",
            app.role,
            app.engine.url.render_as_string(hide_password=True),
            settings.elasticsearch_url,
            "embedded" if app.runs_worker else "separate",
        )
        try:
            yield
        finally:
            await app.stop()
            metrics_process_exited()

    starlette = Starlette(
        routes=[
            # Every method reaches the view, so a PUT gets a GraphQL-shaped 405 too.
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", _healthz),
            Route("/readyz", _readyz(app)),
            Route("/metrics", metrics_endpoint(app)),
            *page_routes(app),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                # `traceparent`/`tracestate`: a browser app that traces (OpenTelemetry web)
                # sends them, and tracing links its spans to ours (api/telemetry.py).
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "X-Correlation-Id",
                    "traceparent",
                    "tracestate",
                ],
                expose_headers=["WWW-Authenticate", "Retry-After"],
                # Browsers cache a preflight this long (seconds) instead of asking each time.
                max_age=600,
            ),
            *telemetry.middleware(),  # a request's `traceparent`, when tracing is on
        ],
    )
    starlette.state.bicameral = app
    return starlette
