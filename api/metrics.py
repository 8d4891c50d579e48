"""Prometheus metrics at /metrics: where each read model is, and how far behind.

The figures come from the write database; while it cannot be read the scrape
still answers, with `bicameral_write_database_up 0` and the figures that need no
database, so a dashboard shows the outage instead of a failed scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from api.bootstrap import Bicameral
from readmodel.lag import ProjectionLag
from writemodel.database import is_database_fault
from writemodel.unit_of_work import WriteDatabaseUnavailable

__all__ = ["metrics_endpoint"]

_HELP = {
    "bicameral_write_database_up": "1 when this scrape could read the write database, else 0.",
    "bicameral_outbox_head": "Newest position in the write side's outbox.",
    "bicameral_projection_position": "Position the read model has applied and made searchable.",
    "bicameral_projection_lag_events": "Events the read model is behind the outbox head.",
    "bicameral_projection_lag_seconds": "Age of the oldest event the read model has not applied.",
    "bicameral_quarantined_documents": "Documents Elasticsearch refused for themselves, "
    "set aside and still missing from the read model (bicameral readmodel quarantine list).",
    "bicameral_subscribers": "Subscriptions this process is serving now.",
    "bicameral_asyncio_tasks": "Tasks alive in this process's event loop (leak watch).",
}


def metrics_endpoint(app: Bicameral) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(_: Request) -> Response:
        lines: list[str] = []

        def family(name: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {_HELP[name]}")
            lines.append(f"# TYPE {name} gauge")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        lags: list[ProjectionLag] = []
        quarantined: dict[str, int] | None = None
        try:
            lags = await app.lag()
            quarantined = await app.worker.quarantine.counts()
        except WriteDatabaseUnavailable:
            pass
        except Exception as error:
            if not is_database_fault(error):
                raise
        family("bicameral_write_database_up", [("", 0 if quarantined is None else 1)])
        if quarantined is not None:
            _figures(family, lags, quarantined)
        family("bicameral_subscribers", [("", len(app.hub.subscribers))])
        family("bicameral_asyncio_tasks", [("", len(asyncio.all_tasks()))])
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return metrics


def _figures(
    family: Callable[[str, list[tuple[str, float]]], None],
    lags: list[ProjectionLag],
    quarantined: dict[str, int],
) -> None:
    head = max((lag.head for lag in lags), default=0)
    family("bicameral_outbox_head", [("", head)])
    family(
        "bicameral_projection_position",
        [(f'{{projection="{lag.name}"}}', lag.position) for lag in lags],
    )
    family(
        "bicameral_projection_lag_events",
        [(f'{{projection="{lag.name}"}}', lag.lag_events) for lag in lags],
    )
    family(
        "bicameral_projection_lag_seconds",
        [(f'{{projection="{lag.name}"}}', round(lag.lag_seconds, 3)) for lag in lags],
    )
    family(
        "bicameral_quarantined_documents",
        [(f'{{projection="{lag.name}"}}', quarantined.get(lag.name, 0)) for lag in lags],
    )
