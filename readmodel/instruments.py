"""The feed worker's metrics: batch size and duration, failed cycles, bulk retries.

prometheus_client's objects, one per process, shown at /metrics (api/metrics.py)
by the process that serves the scrape, or added up over a serve's processes in
multiprocess mode (api/instruments.py says how).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from prometheus_client import Counter, Histogram

__all__ = ["BULK_RETRIES", "FEED_BATCH_EVENTS", "FEED_BATCH_SECONDS", "FEED_FAILURES", "batch"]

FEED_BATCH_EVENTS = Histogram(
    "bicameral_feed_batch_events",
    "Events in each batch the feed worker read and projected (empty polls not counted).",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
FEED_BATCH_SECONDS = Histogram(
    "bicameral_feed_batch_duration_seconds",
    "Seconds from reading a batch to its checkpoint advance (empty polls not counted).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FEED_FAILURES = Counter(
    "bicameral_feed_batch_failures",
    "Feed cycles that failed (checkpoints kept, the batch tried again after a back-off).",
)
BULK_RETRIES = Counter(
    "bicameral_bulk_retries",
    "Bulk requests to Elasticsearch sent again after no answer, a retryable status "
    "or items to retry (readmodel/bulk.py).",
)

S = TypeVar("S")
P = ParamSpec("P")


def batch(
    cycle: Callable[Concatenate[S, P], Awaitable[int]],
) -> Callable[Concatenate[S, P], Awaitable[int]]:
    """Measures one feed cycle that returns the number of events it read."""

    @functools.wraps(cycle)
    async def measured(self: S, /, *args: P.args, **kwargs: P.kwargs) -> int:
        started = time.perf_counter()
        try:
            events = await cycle(self, *args, **kwargs)
        except Exception:
            FEED_FAILURES.inc()
            raise
        if events:
            FEED_BATCH_SECONDS.observe(time.perf_counter() - started)
            FEED_BATCH_EVENTS.observe(events)
        return events

    return measured
