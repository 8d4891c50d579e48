"""Prometheus metrics at /metrics, in prometheus_client's text format.

Two kinds of figures. Where each read model is, and how far behind, comes
from the write database at scrape time; while it cannot be read the scrape
still answers, with `bicameral_write_database_up 0` and the figures that need
no database, so a dashboard shows the outage instead of a failed scrape.
Counters and histograms (requests, mutation outcomes, feed batches, bulk
retries, subscribers: api/instruments.py and readmodel/instruments.py) are
kept by each process as it works; under `bicameral serve --workers N` they
are read from PROMETHEUS_MULTIPROC_DIR and added up over the processes.
docs/operations.md lists every metric.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from api.bootstrap import Bicameral
from readmodel.lag import ProjectionLag
from writemodel.database import is_database_fault
from writemodel.unit_of_work import WriteDatabaseUnavailable

__all__ = ["metrics_endpoint", "metrics_process_exited"]


def metrics_endpoint(app: Bicameral) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(_: Request) -> Response:
        lags: list[ProjectionLag] = []
        quarantined: dict[str, int] | None = None
        try:
            lags = await app.lag()
            quarantined = await app.quarantine.counts()
        except WriteDatabaseUnavailable:
            pass
        except Exception as error:
            if not is_database_fault(error):
                raise
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Figures(lags, quarantined))
        body = generate_latest(scrape) + generate_latest(_kept())
        # The classic text format (0.0.4), which every Prometheus and agent reads.
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return metrics


def _kept() -> CollectorRegistry:
    """The counters and histograms: this process's, or every process's of the serve."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    # prometheus_client leaves its multiprocess helpers unannotated.
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class _Figures(Collector):
    """The figures read at scrape time, as the hand-written /metrics had them."""

    def __init__(self, lags: list[ProjectionLag], quarantined: dict[str, int] | None) -> None:
        self.lags = lags
        self.quarantined = quarantined

    def collect(self) -> Iterable[Metric]:
        yield _gauge(
            "bicameral_write_database_up",
            "1 when this scrape could read the write database, else 0.",
            0 if self.quarantined is None else 1,
        )
        if self.quarantined is not None:
            yield from _figures(self.lags, self.quarantined)
        yield _gauge(
            "bicameral_asyncio_tasks",
            "Tasks alive in the event loop of the process answering (leak watch).",
            len(asyncio.all_tasks()),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _figures(lags: list[ProjectionLag], quarantined: dict[str, int]) -> Iterable[Metric]:
    yield _gauge(
        "bicameral_outbox_head",
        "Newest position in the write side's outbox.",
        max((lag.head for lag in lags), default=0),
    )
    per_read_model: list[tuple[str, str, Callable[[ProjectionLag], float]]] = [
        (
            "bicameral_projection_position",
            "Position the read model has applied and made searchable.",
            lambda lag: lag.position,
        ),
        (
            "bicameral_projection_lag_events",
            "Events the read model is behind the outbox head.",
            lambda lag: lag.lag_events,
        ),
        (
            "bicameral_projection_lag_seconds",
            "Age of the oldest event the read model has not applied.",
            lambda lag: round(lag.lag_seconds, 3),
        ),
        (
            "bicameral_quarantined_documents",
            "Documents Elasticsearch refused for themselves, set aside and still missing "
            "from the read model (bicameral readmodel quarantine list).",
            lambda lag: quarantined.get(lag.name, 0),
        ),
    ]
    for name, documentation, figure in per_read_model:
        family = GaugeMetricFamily(name, documentation, labels=["projection"])
        for lag in lags:
            family.add_metric([lag.name], figure(lag))
        yield family


def metrics_process_exited() -> None:
    """Drop this process's live gauges (subscribers) from the serve's sum when it
    stops; its counters and histograms stay counted, as Prometheus expects."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # prometheus_client leaves its multiprocess helpers unannotated.
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
