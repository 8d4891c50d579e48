"""The API's counters and histograms: requests, mutation outcomes, subscribers.

Made once per process with prometheus_client and exposed at /metrics
(api/metrics.py). Under `bicameral serve --workers N` each process writes
its values to PROMETHEUS_MULTIPROC_DIR and a scrape adds them up (the CLI
gives every serve run a fresh directory), so this module must be imported
after that variable is set: the CLI sets it before importing the app.

Label values are bounded, so no client can create series without end: an
operation's name is the one its document declares, the first
`MAX_OPERATION_NAMES` of them per process; any later name is `(other)`, an
unnamed operation `(anonymous)`, a name the document does not declare or a
document that could not be parsed `(unknown)`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, ParamSpec, TypeVar

from graphql import GraphQLError, OperationDefinitionNode
from prometheus_client import Counter, Gauge, Histogram
from strawberry.extensions import SchemaExtension

from api.errors import Error

__all__ = [
    "MAX_OPERATION_NAMES",
    "MUTATIONS",
    "REQUESTS",
    "SUBSCRIBERS",
    "SUBSCRIPTIONS",
    "RequestMetrics",
    "counted_command",
    "operation_label",
]

# Distinct operation names one process labels requests with; later ones are `(other)`.
MAX_OPERATION_NAMES = 200

REQUESTS = Histogram(
    "bicameral_graphql_request_duration_seconds",
    "GraphQL queries and mutations (over HTTP or a WebSocket) by operation name, "
    "type and outcome: ok, error (data with errors), rejected (no data: refused before "
    "or at the start of execution), deadline (REQUEST_TIMEOUT reached).",
    ["operation", "type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SUBSCRIPTIONS = Histogram(
    "bicameral_graphql_subscription_duration_seconds",
    "Subscriptions that ended, by operation name and outcome (ok: ended by the "
    "client or the server, error or rejected: ended by an error), and how long they ran.",
    ["operation", "outcome"],
    buckets=(1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0),
)
MUTATIONS = Counter(
    "bicameral_mutations",
    "Commands sent by mutations, by command and outcome: ok, or the error's code.",
    ["command", "outcome"],
)
SUBSCRIBERS = Gauge(
    "bicameral_subscribers",
    "Subscriptions being served now (summed over the live processes of one serve).",
    multiprocess_mode="livesum",
)

_names: set[str] = set()


def operation_label(document: Any, name: str | None) -> str:
    """The `operation` label for a request: bounded, whatever the client sends."""
    if document is None:
        return "(unknown)"
    declared = [
        d.name.value if d.name else None
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    if name is None:
        # Without a name only a document of one operation runs: the one it declares.
        name = declared[0] if len(declared) == 1 else None
        if name is None:
            return "(anonymous)" if len(declared) == 1 else "(unknown)"
    if name not in declared:
        return "(unknown)"
    if name in _names:
        return name
    if len(_names) >= MAX_OPERATION_NAMES:
        return "(other)"
    _names.add(name)
    return name


class RequestMetrics(SchemaExtension):
    """Counts and times every operation by name, type and outcome. A
    subscription's operation lasts as long as the subscription does, so it is
    timed apart, in `SUBSCRIPTIONS`, and the request histogram stays a latency."""

    def on_operation(self) -> Generator[None, None, None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except (asyncio.CancelledError, TimeoutError):
            outcome = "deadline"
            raise
        except Exception:
            # Strawberry answers it with an error and no data (a parse error is raised).
            outcome = "rejected"
            raise
        finally:
            self._record(outcome, time.perf_counter() - started)

    def _record(self, outcome: str, seconds: float) -> None:
        context = self.execution_context
        result = context.result
        if outcome == "ok" and result is not None and result.errors:
            outcome = "error" if result.data is not None else "rejected"
        elif outcome == "ok" and result is None and context.pre_execution_errors:
            outcome = "rejected"
        document = context.graphql_document
        try:
            kind = context.operation_type.value if document is not None else "unknown"
        except RuntimeError:  # the document has no operation of the name asked for
            kind = "unknown"
        operation = operation_label(document, context.operation_name)
        if kind == "subscription":
            if outcome == "deadline":
                outcome = "ok"  # no deadline: cancelled because its client went away
            SUBSCRIPTIONS.labels(operation, outcome).observe(seconds)
        else:
            REQUESTS.labels(operation, kind, outcome).observe(seconds)


P = ParamSpec("P")
R = TypeVar("R")


def counted_command(
    execute: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Counts what the mutations' `execute(info, command, ...)` answers: ok, the
    typed error's code, or the code of the GraphQL error it raises."""

    @functools.wraps(execute)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        command = kwargs.get("command", args[1] if len(args) > 1 else None)
        name = type(command).__name__
        try:
            answer = await execute(*args, **kwargs)
        except GraphQLError as error:
            code = (error.extensions or {}).get("code")
            MUTATIONS.labels(name, str(code or "INTERNAL_ERROR")).inc()
            raise
        except (asyncio.CancelledError, TimeoutError):
            MUTATIONS.labels(name, "DEADLINE_EXCEEDED").inc()
            raise
        except Exception:
            MUTATIONS.labels(name, "INTERNAL_ERROR").inc()
            raise
        MUTATIONS.labels(name, answer.code if isinstance(answer, Error) else "ok").inc()
        return answer

    return counted
