"""The query baseline: a bare Starlette endpoint running the same Elasticsearch search.

No Bicameral code: it takes the search body as JSON (the benchmark builds it
with `readmodel.queries.product_search`, the body the service sends), runs it
with `AsyncElasticsearch.search` against the same alias, and returns
Elasticsearch's JSON. Served by uvicorn in its own process, configured as
`bicameral serve` configures it: as many processes (uvicorn's workers, each
building the app from a factory), uvloop and httptools when installed, access
log silenced by the log level.

    python -m bench.baseline_app --port 8001 --elasticsearch-url URL --index ALIAS [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import uvicorn
from elasticsearch import AsyncElasticsearch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["create_app", "create_app_from_env"]

# How the parent hands the search to uvicorn's worker processes, which import the
# factory by name and call it without arguments.
_URL_VARIABLE = "BENCH_BASELINE_ELASTICSEARCH_URL"
_INDEX_VARIABLE = "BENCH_BASELINE_INDEX"


def create_app(elasticsearch_url: str, index: str) -> Starlette:
    client = AsyncElasticsearch(
        elasticsearch_url, request_timeout=30, retry_on_timeout=True, max_retries=2
    )

    async def search(request: Request) -> Response:
        body = await request.json()
        result = await client.search(index=index, body=body)
        return JSONResponse(result.body)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.close()

    return Starlette(
        routes=[Route("/search", search, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    return create_app(os.environ[_URL_VARIABLE], os.environ[_INDEX_VARIABLE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--elasticsearch-url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--workers", type=int, default=1, help="processes (uvicorn's workers)")
    args = parser.parse_args()
    os.environ[_URL_VARIABLE] = args.elasticsearch_url
    os.environ[_INDEX_VARIABLE] = args.index
    # An import string and a factory, as `bicameral serve` runs its app, so that one
    # process or several are started the same way.
    uvicorn.run(
        "bench.baseline_app:create_app_from_env",
        factory=True,
        workers=args.workers,
        host="127.0.0.1",
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
