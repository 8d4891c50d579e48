"""Paths 1 and 2: `products(search: ...)` against the same search sent raw.

1. Latency at concurrency 1, interleaved request by request so that both sides
   see the same machine: GraphQL over HTTP to `bicameral serve`, GraphQL
   in-process (`schema.execute`), `AsyncElasticsearch.search` with the body
   `readmodel.queries.product_search` builds (the baseline), and the bare
   Starlette endpoint over HTTP (how much of the gap is the HTTP hop); then
   what parsing and validating the query costs when no cache answers, as a
   share of the in-process time (`bench.validation`). Beside them, in the same
   rotation: the persisted query over HTTP (Apollo's automatic persisted query,
   the hash alone), and the same search sent as a document no cache has seen
   (a unique comment each time), which pays the parse and validation the hash
   skips. The same search at `first: 100` (`LARGE_PAGE`), every product field,
   against the raw search for 100 documents: where the per-node cost of the
   GraphQL layer (resolution, conversion, JSON encoding) shows.
2. Throughput at concurrency 16 over HTTP: `/graphql` against the bare
   Starlette endpoint doing the same search, in alternating rounds, each served
   by the same number of processes (`bicameral serve`'s default, one per core).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from elasticsearch import AsyncElasticsearch

from api.identity import Identity, Role
from bench import persisted, validation
from bench.graphql import PRODUCTS, GraphQLFailure, http_client, post, post_persisted
from bench.load import closed_loop
from bench.report import Figure, Target
from bench.services import cpu_seconds, serving_processes
from bench.stats import Distribution, median
from readmodel.queries import product_search

__all__ = ["QuerySetup", "latency", "throughput"]

PAGE = 20
# A large page: what a node costs shows here, as 100 nodes of every field.
LARGE_PAGE = 100
PRODUCTS_LARGE = PRODUCTS.replace(f"first: {PAGE}", f"first: {LARGE_PAGE}")
assert PRODUCTS_LARGE != PRODUCTS, "bench.graphql.PRODUCTS no longer asks for first: 20"
CONCURRENCY = 16
# Who the in-process variant is, as the HTTP one is an admin (its token): an admin's
# search filters no status, the same query the raw baseline sends.
BENCH_ADMIN = Identity(Role.ADMIN, subject="bench")


@dataclass
class QuerySetup:
    api_url: str  # http://127.0.0.1:PORT of `bicameral serve`
    api_bearer: str  # an admin's token for it (Services.admin_token)
    baseline_url: str  # http://127.0.0.1:PORT of bench.baseline_app
    api_pid: int
    baseline_pid: int
    es: AsyncElasticsearch  # the raw baseline's client, in this process
    alias: str  # the products alias both sides search
    app: Any  # api.bootstrap.Bicameral, for schema.execute in-process
    words: list[str]


def _body(word: str, first: int = PAGE) -> dict[str, Any]:
    return product_search(search=word, first=first)


def _check_graphql(data: dict[str, Any], page: int = PAGE) -> None:
    if len(data["products"]["edges"]) != page:
        raise GraphQLFailure(f"expected {page} products, got {len(data['products']['edges'])}")


def _variants(
    setup: QuerySetup, api: httpx.AsyncClient, bare: httpx.AsyncClient
) -> dict[str, Callable[[str], Awaitable[None]]]:
    from api.context import Context
    from api.schema import build_schema

    settings = setup.app.settings
    schema = build_schema(mask_errors=settings.mask_errors, introspection=settings.introspection)

    async def graphql_http(word: str) -> None:
        _check_graphql(await post(api, setup.api_url + "/graphql", PRODUCTS, {"search": word}))

    async def graphql_http_persisted(word: str) -> None:
        data = await post_persisted(api, setup.api_url + "/graphql", PRODUCTS, {"search": word})
        _check_graphql(data)

    unseen = itertools.count()

    async def graphql_http_unseen(word: str) -> None:
        # Another text each time: the parse and validation caches never answer.
        query = f"{PRODUCTS}\n# {next(unseen)}"
        _check_graphql(await post(api, setup.api_url + "/graphql", query, {"search": word}))

    async def graphql_in_process(word: str) -> None:
        result = await schema.execute(
            PRODUCTS,
            variable_values={"search": word},
            context_value=Context(app=setup.app, request=None, identity=BENCH_ADMIN),
        )
        if result.errors:
            raise GraphQLFailure(str(result.errors)[:300])
        assert result.data is not None
        _check_graphql(result.data)

    async def raw(word: str) -> None:
        found = await setup.es.search(index=setup.alias, body=_body(word))
        if len(found["hits"]["hits"]) != PAGE + 1:
            raise GraphQLFailure(f"raw search found {len(found['hits']['hits'])} hits")

    async def graphql_http_large(word: str) -> None:
        data = await post(api, setup.api_url + "/graphql", PRODUCTS_LARGE, {"search": word})
        _check_graphql(data, LARGE_PAGE)

    async def raw_large(word: str) -> None:
        found = await setup.es.search(index=setup.alias, body=_body(word, LARGE_PAGE))
        if len(found["hits"]["hits"]) != LARGE_PAGE + 1:
            raise GraphQLFailure(f"raw search found {len(found['hits']['hits'])} of 101 hits")

    async def bare_http(word: str) -> None:
        response = await bare.post(setup.baseline_url + "/search", json=_body(word))
        response.raise_for_status()
        if len(response.json()["hits"]["hits"]) != PAGE + 1:
            raise GraphQLFailure("bare endpoint answered short")

    return {
        "graphql_http": graphql_http,
        "graphql_http_persisted": graphql_http_persisted,
        "graphql_http_unseen": graphql_http_unseen,
        "graphql_in_process": graphql_in_process,
        "raw_search": raw,
        "bare_starlette_http": bare_http,
        "graphql_http_large": graphql_http_large,
        "raw_search_large": raw_large,
    }


async def latency(setup: QuerySetup, requests: int, *, warmup: int = 20) -> list[Figure]:
    print(f"[1] query latency: {requests} requests per variant, interleaved", flush=True)
    async with http_client(1, setup.api_bearer) as api, http_client(1) as bare:
        variants = _variants(setup, api, bare)
        names = list(variants)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(warmup + requests):
            word = setup.words[i % len(setup.words)]
            # Rotate the order, so no variant always runs right after another.
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                began = time.perf_counter()
                await variants[name](word)
                if i >= warmup:
                    samples[name].append(time.perf_counter() - began)
    dist = {name: Distribution.of(values) for name, values in samples.items()}
    raw = dist["raw_search"]
    details = {name: d.as_dict() for name, d in dist.items()}
    figures = []
    for name, label in (
        ("graphql_http", "GraphQL over HTTP (bicameral serve)"),
        ("graphql_in_process", "GraphQL in-process (schema.execute)"),
    ):
        d = dist[name]
        for q, target in (("p50", 2.0), ("p99", 2.5)):
            figures.append(
                Figure(
                    path="1",
                    measure=f"query latency {q}, {label} / raw search",
                    system=getattr(d, q),
                    baseline=getattr(raw, q),
                    unit="ms",
                    target=Target("<=", target),
                    system_is=label,
                    baseline_is="AsyncElasticsearch.search, same body, in the bench process",
                    details=details if name == "graphql_http" and q == "p50" else {},
                )
            )
    large, raw_large = dist["graphql_http_large"], dist["raw_search_large"]
    for q, target in (("p50", 2.5), ("p99", None)):
        figures.append(
            Figure(
                path="1",
                measure=f"query latency {q}, first: {LARGE_PAGE}, GraphQL over HTTP / raw search",
                system=getattr(large, q),
                baseline=getattr(raw_large, q),
                unit="ms",
                target=None if target is None else Target("<=", target),
                system_is=f"bicameral serve, products(first: {LARGE_PAGE}) with every field",
                baseline_is=f"AsyncElasticsearch.search for {LARGE_PAGE} documents, same body",
            )
        )
    hashed = dist["graphql_http_persisted"]
    for baseline, label, note in (
        (
            "graphql_http",
            "GraphQL over HTTP, the same text each time (caches warm)",
            "what the hash saves beyond the caches: the text's JSON decoding and lookups",
        ),
        (
            "graphql_http_unseen",
            "GraphQL over HTTP, a text no cache has seen (parse + validate)",
            "a hash lookup should cost less than a parse",
        ),
    ):
        figures.append(
            Figure(
                path="1",
                measure=f"query latency p50, persisted query over HTTP / {label}",
                system=hashed.p50,
                baseline=dist[baseline].p50,
                unit="ms",
                target=None,  # the search and its noise dominate; bench.persisted has the target
                system_is="POST /graphql with extensions.persistedQuery.sha256Hash alone "
                "(registered on the first request, as Apollo's link does)",
                baseline_is=f"POST /graphql with the query text; {note}",
                details={"p99_ms": {"persisted": hashed.p99, baseline: dist[baseline].p99}},
            )
        )
    # After the interleaved samples, so that it takes nothing from their machine.
    checks = await validation.probe(setup.app, PRODUCTS, {"search": setup.words[0]})
    figures.append(validation.figure(PRODUCTS, checks, dist["graphql_in_process"].p50))
    figures.extend(await persisted.figures(setup.app, max(requests, 200)))
    hop = dist["bare_starlette_http"]
    figures.append(
        Figure(
            path="1",
            measure="query latency p50, bare Starlette over HTTP / raw search (the HTTP hop)",
            system=hop.p50,
            baseline=raw.p50,
            unit="ms",
            target=None,
            system_is="bench.baseline_app over HTTP",
            baseline_is="AsyncElasticsearch.search in the bench process",
        )
    )
    return figures


async def throughput(setup: QuerySetup, requests: int, seconds: float, rounds: int) -> list[Figure]:
    print(
        f"[2] query throughput: {rounds} round(s) of {requests} requests or {seconds:.0f}s "
        f"per side at concurrency {CONCURRENCY}",
        flush=True,
    )
    words = setup.words
    server = {"graphql": setup.api_pid, "bare_starlette": setup.baseline_pid}
    # Like with like: as many processes serving on each side (uvicorn's workers).
    processes = {name: serving_processes(pid) for name, pid in server.items()}
    if len(set(processes.values())) != 1:
        raise RuntimeError(f"path 2 needs as many processes on each side, not {processes}")
    async with (
        http_client(CONCURRENCY, setup.api_bearer) as api,
        http_client(CONCURRENCY) as bare,
    ):

        async def graphql(n: int) -> None:
            data = await post(
                api, setup.api_url + "/graphql", PRODUCTS, {"search": words[n % len(words)]}
            )
            _check_graphql(data)

        async def starlette(n: int) -> None:
            response = await bare.post(
                setup.baseline_url + "/search", json=_body(words[n % len(words)])
            )
            response.raise_for_status()

        sides = {"graphql": graphql, "bare_starlette": starlette}
        for call in sides.values():  # warm: connections open, caches primed
            await closed_loop(call, total=4 * CONCURRENCY, concurrency=CONCURRENCY, duration=30)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        latencies: dict[str, list[float]] = {name: [] for name in sides}
        failures: dict[str, list[str]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                before = cpu_seconds(server[name])
                result = await closed_loop(
                    sides[name], total=requests, concurrency=CONCURRENCY, duration=seconds
                )
                used = cpu_seconds(server[name]) - before
                cpu[name].append(1000 * used / max(1, result.completed))
                rates[name].append(result.rate)
                latencies[name].extend(result.latencies)
                failures[name].extend(result.errors)
                print(f"    {name}: {result.rate:,.0f} req/s ({result.failed} failed)", flush=True)
    return [
        Figure(
            path="2",
            measure="query throughput at concurrency 16, /graphql / bare Starlette",
            system=median(rates["graphql"]),
            baseline=median(rates["bare_starlette"]),
            unit="req/s",
            target=Target(">=", 0.5),
            system_is="bicameral serve /graphql over HTTP",
            baseline_is="bench.baseline_app (Starlette + uvicorn, same search) over HTTP",
            details={
                "rounds": rates,
                "latency_ms": {k: Distribution.of(v).as_dict() for k, v in latencies.items()},
                "processes": processes,
                # CPU time of the serving processes (bicameral serve / the baseline app).
                "server_cpu_ms_per_request": {k: median(v) for k, v in cpu.items()},
                "failures": failures,
            },
        )
    ]
