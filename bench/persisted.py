"""Path 1, beside it: what a persisted query's hash costs the service, with no search.

Over real HTTP the search dominates path 1 (and its noise hides a millisecond), so
this measures the service's own share: the ASGI app in the bench process, a document
that reads nothing (aliased `__typename` fields, under the alias limit), sent three
ways in rotation: the text each time (the parse and validation caches answer), the
hash alone (Apollo's automatic persisted query), and a text no cache has seen (a
unique comment), which pays the parse and validation the hash skips.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.graphql import GraphQLFailure
from bench.report import Figure, Target
from bench.stats import Distribution

__all__ = ["figures"]

DOCUMENT = "query Shape { " + " ".join(f"f{i}: __typename" for i in range(25)) + " }"


async def figures(app: Any, requests: int, *, warmup: int = 50) -> list[Figure]:
    """`app`: the bench's api.bootstrap.Bicameral (its settings; nothing is searched)."""
    from api.app import create_app

    print(f"[1] persisted query, in-process ASGI: {requests} requests per variant", flush=True)
    asgi = create_app(bicameral=app)
    digest = hashlib.sha256(DOCUMENT.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    unseen = itertools.count()
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def send(body: dict[str, Any]) -> None:
            response = await client.post("/graphql", json=body)
            if response.status_code != 200 or "errors" in response.json():
                raise GraphQLFailure(response.text[:300])

        await send({"query": DOCUMENT, "extensions": persisted})  # registers the hash
        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "text": lambda: send({"query": DOCUMENT}),
            "hash": lambda: send({"extensions": persisted}),
            "unseen_text": lambda: send({"query": f"{DOCUMENT}\n# {next(unseen)}"}),
        }
        names = list(variants)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(warmup + requests):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                began = time.perf_counter()
                await variants[name]()
                if i >= warmup:
                    samples[name].append(time.perf_counter() - began)
    dist = {name: Distribution.of(values) for name, values in samples.items()}
    details = {name: d.as_dict() for name, d in dist.items()}
    return [
        Figure(
            path="1",
            measure=f"persisted query p50, in-process ASGI, no search / {label}",
            system=dist["hash"].p50,
            baseline=dist[baseline].p50,
            unit="ms",
            target=target,
            system_is="POST /graphql through the ASGI app, extensions.persistedQuery alone",
            baseline_is=f"the same document's text: {label}",
            details=details if baseline == "text" else {},
        )
        for baseline, label, target in (
            ("text", "the same text each time (caches warm)", None),
            ("unseen_text", "a text no cache has seen (parse + validate)", Target("<=", 1.0)),
        )
    ]
