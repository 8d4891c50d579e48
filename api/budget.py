"""The query budget: what each client may spend per minute, in the cost units of
api/limits.py.

Every client has a token bucket holding up to one minute's budget
(`BUDGET_PER_MINUTE`, times `BUDGET_STAFF_MULTIPLIER` for staff and admins) and
refilling at a sixtieth of it per second. An operation is let through when the
bucket holds its cost, which is then taken out; otherwise it is not executed
and answers `RATE_LIMITED` with `extensions.retryAfter` (whole seconds until
the bucket holds enough), and over HTTP status 429 with `Retry-After`. Nothing
is taken for a refused operation, so a client that waits `retryAfter` gets in.
An operation costing more than a whole bucket is charged the whole bucket (it
needs a full one), so any operation the limits let through can run.

Who a client is: its token's issuer and subject when it has one, else its
address, `request.client.host`. The address is the peer's, or the one a
trusted proxy put in `X-Forwarded-For`: uvicorn rewrites it only for peers
in `FORWARDED_ALLOW_IPS` (by default 127.0.0.1 and ::1), so this module never
reads that header itself and a client elsewhere cannot pick its own address.

Queries and mutations spend when they are about to execute, after validation
(a refused document spends nothing; the limits bound what it costs to parse
and validate). Subscriptions spend once, when they subscribe. An operation run
in process without a request (the demo loader, tests) is not a client and
spends nothing.

The buckets live in the process's memory, bounded: past `MAX_CLIENTS` the client
seen longest ago is forgotten (it starts again with a full bucket). With N API
processes a client may spend up to N times the budget, as it reaches them in
turn. Each request costs one dictionary lookup and a few additions; nothing
here awaits.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from api.identity import Identity
from api.limits import measure_operation
from api.settings import Settings

__all__ = ["MAX_CLIENTS", "Buckets", "QueryBudget", "Spending", "client_key"]

# Clients remembered at once: at most about 40 MB of buckets (measured, IPv6 keys).
MAX_CLIENTS = 100_000


@dataclass(frozen=True)
class Spending:
    """What one operation's spending left: whether it may run, and the bucket after it."""

    allowed: bool
    charged: int
    capacity: int
    remaining: int
    # Whole seconds until the bucket holds enough for this operation (0 when allowed).
    retry_after: int
    # Whole seconds until the bucket is full again.
    resets_in: int

    def report(self) -> dict[str, Any]:
        """The budget as `extensions.cost.budget` shows it."""
        return {"perMinute": self.capacity, "remaining": self.remaining, "resetsIn": self.resets_in}


class Buckets:
    """One token bucket per client key, in memory, at most `max_clients` of them."""

    def __init__(
        self, *, max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_clients = max_clients
        self.clock = clock
        # key -> (points held, when counted); least recently seen first.
        self._held: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def spend(self, key: Hashable, cost: int, *, per_minute: int) -> Spending:
        """Take `cost` from `key`'s bucket (holding up to `per_minute`, refilling at a
        sixtieth of it per second) if it holds that much; say what is left."""
        now = self.clock()
        per_second = per_minute / 60
        held, counted = self._held.pop(key, (float(per_minute), now))
        held = min(float(per_minute), held + max(now - counted, 0.0) * per_second)
        charged = min(max(cost, 0), per_minute)
        allowed = charged <= held
        retry_after = 0
        if allowed:
            held -= charged
        else:
            retry_after = max(1, math.ceil((charged - held) / per_second))
        self._held[key] = (held, now)
        if len(self._held) > self.max_clients:
            self._held.popitem(last=False)
        return Spending(
            allowed=allowed,
            charged=charged,
            capacity=per_minute,
            remaining=math.floor(held),
            retry_after=retry_after,
            resets_in=math.ceil((per_minute - held) / per_second),
        )


def client_key(identity: Identity, request: Any) -> tuple[str, ...] | None:
    """Whose bucket an operation spends from: the token's issuer and subject, else
    the client's address. None for an operation run in process (no request)."""
    if identity.subject is not None:
        return ("subject", identity.issuer or "", identity.subject)
    if request is None:
        return None
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    # An ASGI server may know no address (a Unix socket): such clients share one bucket.
    return ("address", str(host) if host else "unknown")


def _settings(context: Any) -> Settings | None:
    return getattr(getattr(context, "app", None), "settings", None)


class QueryBudget(SchemaExtension):
    """Spends each operation's cost from its client's bucket before it executes,
    refuses it when the bucket holds too little, and adds the bucket's state to
    `extensions.cost.budget` (next to CostReport's `requested` and `limit`)."""

    def __init__(self, buckets: Buckets) -> None:
        self.buckets = buckets

    def on_execute(self) -> Iterator[None]:
        spending = self._spend()
        if spending is not None and not spending.allowed:
            self._refuse(spending)
        yield

    def _spend(self) -> Spending | None:
        execution = self.execution_context
        context = execution.context
        settings = _settings(context)
        per_minute = settings.budget_per_minute if settings else Settings.budget_per_minute
        document = execution.graphql_document
        if per_minute == 0 or document is None:
            return None
        identity: Identity | None = getattr(context, "identity", None)
        if identity is None:
            return None
        key = client_key(identity, getattr(context, "request", None))
        if key is None:
            return None
        if identity.is_staff:
            multiplier = (
                settings.budget_staff_multiplier if settings else Settings.budget_staff_multiplier
            )
            per_minute *= multiplier
        # Cached by the document (api/limits.py): CostReport and the limits rule
        # measured this same document already, so this is a lookup.
        measures = measure_operation(execution.schema._schema, document, execution.operation_name)
        spending = self.buckets.spend(key, measures.cost if measures else 1, per_minute=per_minute)
        if execution.operation_type is not OperationType.SUBSCRIPTION:
            # Merged into CostReport's report; a subscription's events carry none
            # (it spends once, and its events come long after).
            cost = execution.extensions_results.setdefault("cost", {})
            cost["budget"] = spending.report()
        return spending

    def _refuse(self, spending: Spending) -> None:
        execution = self.execution_context
        error = GraphQLError(
            f"Over the query budget of {spending.capacity:,} per minute: this operation "
            f"costs {spending.charged:,} and {spending.remaining:,} is left. "
            f"Retry in {spending.retry_after} s.",
            extensions={"code": "RATE_LIMITED", "retryAfter": spending.retry_after},
        )
        if execution.operation_type is OperationType.SUBSCRIPTION:
            # Strawberry answers an error raised here as the subscription's one result.
            raise error
        # A result set before execution is answered instead of executing.
        execution.result = GraphQLExecutionResult(data=None, errors=[error])
        response = getattr(execution.context, "response", None)
        if isinstance(response, Response):  # over HTTP; a WebSocket's is not one
            # The status and header that proxies and clients' retry logic understand.
            response.status_code = 429
            response.headers["Retry-After"] = str(spending.retry_after)
