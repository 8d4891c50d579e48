"""The feed worker's metrics: batch size and duration, failed cycles, bulk retries.

prometheus_client's objects, one per process, shown at /metrics (api/metrics.py)
by the process that serves the scrape, or added up over a serve's processes in
multiprocess mode (api/instruments.py says how).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

from opentelemetry import trace
from prometheus_client import Counter, Histogram, disable_created_metrics

from writemodel.outbox import StoredEvent

__all__ = [
    "BULK_RETRIES",
    "FEED_BATCH_EVENTS",
    "FEED_BATCH_SECONDS",
    "FEED_FAILURES",
    "batch",
    "link_to_commands",
]

# A proxy until tracing is set up (api/telemetry.py); without it, spans cost nothing.
_tracer = trace.get_tracer("bicameral.feed")
# A correlation id the API stored as its span's W3C traceparent (api/telemetry.py).
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# Links one batch's span carries at most (OpenTelemetry's default limit too).
MAX_LINKS = 128

# No `_created` sample beside every counter and histogram, in any process (the
# API's and a separate worker's both import this module): Prometheus does not
# need them in the text format, and they double what a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

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
            with _tracer.start_as_current_span("feed batch") as span:
                events = await cycle(self, *args, **kwargs)
                span.set_attribute("bicameral.feed.events", events)
        except Exception:
            FEED_FAILURES.inc()
            raise
        if events:
            FEED_BATCH_SECONDS.observe(time.perf_counter() - started)
            FEED_BATCH_EVENTS.observe(events)
        return events

    return measured


def link_to_commands(events: Sequence[StoredEvent]) -> None:
    """Link the current batch's span to the spans of the mutations whose events it
    projects, and say which positions it covers; nothing when no one traces."""
    span = trace.get_current_span()
    if not span.is_recording() or not events:
        return
    span.set_attribute("bicameral.feed.first_position", events[0].position)
    span.set_attribute("bicameral.feed.last_position", events[-1].position)
    linked: set[str] = set()
    for event in events:
        if event.correlation_id in linked or len(linked) >= MAX_LINKS:
            continue
        match = _TRACEPARENT.fullmatch(event.correlation_id)
        if match is None:
            continue
        linked.add(event.correlation_id)
        span.add_link(
            trace.SpanContext(
                trace_id=int(match[1], 16),
                span_id=int(match[2], 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(match[3], 16)),
            ),
            {"bicameral.correlation_id": event.correlation_id},
        )
