"""Subscription fan-out: one execution and one serialised payload per change for
every subscriber of the same operation in the same access scope.

Without it each subscriber ran the subscription on its own: one hub queue,
one execution of the selection set and one JSON encoding per change and per
subscriber, so 4,000 subscribers to `changes` paid 4,000 executions of the
same event (p99 2.1 s on two cores). Here subscribers who would get the very
same payloads share a *group*:

- The sharing key is the document, the operation name, the variables (as
  canonical JSON) and the caller's role and customer id. Those two are all the
  policy (api/policy.py) and the resolvers read of the caller (`scope`,
  `scope_of`, `sees_contact_details`, the filters in api/subscriptions.py), and
  the group runs as an `Identity` built from them alone (`shared_identity`), so
  nothing else of a member's identity can leak into what the group sends: a
  customer never joins another customer's group, and staff never join a
  customer's.
- Every member is first *admitted* on its own, with its own context: the
  operation goes through strawberry as before (validation, limits, the policy,
  the query budget charged to the member's own client, the root resolver's
  argument checks), and `_notifications` (api/subscriptions.py) stops as soon as
  it knows the subscription may be shared (`Admission.shareable`). An error on
  the way is the member's own answer, as before.
- A subscription that resumes (`after`) is never shared: it replays its own
  past from the outbox, so its admission run simply continues as its stream,
  exactly as before (exactly-once as the hub promises).
- The group runs the operation once with a `Shared` context whose `start` is
  the hub's frontier when the group was made, and notes each change's position
  (`Shared.position`) before yielding it. A member records the hub's frontier
  when it joins, without an await between reading it and joining, and gets the
  group's payloads for positions above it: the changes it would have had from
  a hub subscription of its own made at that moment, each once, in order.
- Each member holds a bounded deque of (position, payload) and one waiter; the
  group appends without awaiting, so a slow socket never slows the group or
  the others. A member whose deque fills is ended with the position it had
  sent last (SUBSCRIBER_FELL_BEHIND, resume with `after`), as the hub ends an
  unshared subscriber. Should the group itself fall behind the hub, each member
  is ended the same way with its own position.
- The payload is encoded once per change; a socket's `next` frame is the
  payload with the operation's id around it.

Both WebSocket protocols share (api/websocket.py: graphql-transport-ws and the
legacy graphql-ws, each with its own frame around the payload), and a group
serves members of either. Multipart HTTP subscriptions (api/multipart.py) keep
their own execution per subscriber: strawberry's view streams each one's
results through its own response, with no socket to write a shared frame to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from strawberry.types.execution import ExecutionResult, PreExecutionError

from api.context import Context
from api.identity import Identity, Role

if TYPE_CHECKING:
    from api.bootstrap import Bicameral

__all__ = [
    "Admission",
    "Ending",
    "Fanout",
    "Key",
    "Member",
    "Run",
    "Shared",
    "fanout_of",
    "shared_identity",
    "sharing_key",
]

FELL_BEHIND = "SUBSCRIBER_FELL_BEHIND"

log = logging.getLogger(__name__)


@dataclass
class Admission(Context):
    """A member's own run of its subscription: `_notifications` sets `shareable`
    and ends instead of subscribing when the group may serve it."""

    shareable: bool = False

    @classmethod
    def of(cls, context: Context) -> Admission:
        return cls(**{f.name: getattr(context, f.name) for f in fields(Context)})


@dataclass
class Shared(Context):
    """A group's run: start after `start`; `position` is the change last yielded."""

    start: int = 0
    position: int = 0


def shared_identity(identity: Identity) -> Identity:
    """All a group knows of its members: what the policy and the resolvers read."""
    return Identity(identity.role, customer_id=identity.customer_id)


Key = tuple[str, str | None, str, Role, str | None]


def sharing_key(
    query: str, operation_name: str | None, variables: object, identity: Identity
) -> Key | None:
    """Members with equal keys get equal payloads; None: variables with no canonical
    JSON (not sent by a JSON client), so not shared."""
    try:
        canonical = json.dumps(variables or {}, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return (query, operation_name, canonical, identity.role, identity.customer_id)


# How a member's stream ended: the group's stream completed, the member (or the
# group) fell behind, or the group's run was refused before it began (`errors`).
Ending = Literal["complete", "behind", "error"]


class Member:
    """One subscriber's share of a group: what is left to send, and little else."""

    __slots__ = ("ending", "errors", "frames", "joined", "last", "limit", "waiter")

    def __init__(self, joined: int, limit: int) -> None:
        self.joined = joined  # the hub's frontier when it joined
        self.last = joined  # the position of the change sent last (or `joined`)
        self.limit = limit
        self.frames: deque[tuple[int, str]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ending: Ending | None = None
        self.errors: list[dict[str, Any]] = []

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def offer(self, position: int, payload: str) -> None:
        if self.ending is not None or position <= self.joined:
            return
        if len(self.frames) >= self.limit:
            self.end("behind")
            return
        self.frames.append((position, payload))
        self._wake()

    def end(self, ending: Ending, errors: list[dict[str, Any]] | None = None) -> None:
        if self.ending is None:
            self.ending = ending
            self.errors = errors or []
            if ending == "behind":
                self.frames.clear()  # as the hub does: what was queued is not sent
            self._wake()

    async def deliver(self, send: Callable[[int, str], Any]) -> Ending:
        """Send each payload as it comes (`send(position, payload)`), then say how it ended."""
        while True:
            while self.frames:
                position, payload = self.frames.popleft()
                await send(position, payload)
                self.last = position
            if self.ending is not None:
                return self.ending
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def fell_behind(self, message: Callable[[int], str]) -> list[dict[str, Any]]:
        """The error ending a member that fell behind, with its own resume point."""
        base = self.errors[0] if self.errors else {}
        extensions = {**base.get("extensions", {}), "code": FELL_BEHIND, "argument": "after"}
        return [{**base, "message": message(self.last), "extensions": extensions}]


# Runs the operation as the group: (context) -> the stream of results.
Run = Callable[[Shared], Any]
Encode = Callable[[object], str]


class _Group:
    def __init__(self, fanout: Fanout, key: Key) -> None:
        self.fanout = fanout
        self.key = key
        self.members: set[Member] = set()
        self.task: asyncio.Task[None] | None = None

    async def run(self, context: Shared, run: Run, encode: Encode) -> None:
        try:
            results: AsyncGenerator[Any, None] = await run(context)
            async with contextlib.aclosing(results):
                first = True
                async for result in results:
                    if not isinstance(result, ExecutionResult) or (
                        first and isinstance(result, PreExecutionError)
                    ):
                        errors: list[dict[str, Any]] = [
                            dict(e.formatted) for e in getattr(result, "errors", None) or []
                        ]
                        self._end("error", errors)
                        return
                    first = False
                    formatted: list[dict[str, Any]] = [
                        dict(e.formatted) for e in result.errors or []
                    ]
                    if any(
                        (e.get("extensions") or {}).get("code") == FELL_BEHIND for e in formatted
                    ):
                        self._end("behind", formatted)
                        return
                    payload: dict[str, object] = {"data": result.data}
                    if formatted:
                        payload["errors"] = formatted
                    if result.extensions:
                        payload["extensions"] = result.extensions
                    encoded = encode(payload)
                    for member in list(self.members):
                        member.offer(context.position, encoded)
            self._end("complete")
        except asyncio.CancelledError:
            self._end("complete")
            raise
        except Exception:
            log.exception("a subscription group failed; its members are told")
            self._end("error", [{"message": "Internal server error"}])
        finally:
            self.fanout._forget(self)

    def _end(self, ending: Ending, errors: list[dict[str, Any]] | None = None) -> None:
        self.fanout._forget(self)  # no one joins a group that has ended
        for member in self.members:
            member.end(ending, errors)


class Fanout:
    """The groups of one API process (one per app: `fanout_of`)."""

    def __init__(self, app: Bicameral) -> None:
        self.app = app
        self.groups: dict[Key, _Group] = {}
        self._membership: dict[Member, _Group] = {}

    def join(self, key: Key, identity: Identity, run: Run, encode: Encode, *, limit: int) -> Member:
        """A member of the key's group (made if there is none), from the hub's frontier
        now: no await here, so no change can pass between the two."""
        frontier = self.app.hub.frontier
        group = self.groups.get(key)
        if group is None:
            group = _Group(self, key)
            self.groups[key] = group
            context = Shared(
                app=self.app, request=None, identity=shared_identity(identity), start=frontier
            )
            group.task = asyncio.create_task(group.run(context, run, encode), name="fanout-group")
            group.task.add_done_callback(_retrieve)
        member = Member(frontier, limit)
        group.members.add(member)
        self._membership[member] = group
        return member

    def leave(self, member: Member) -> None:
        group = self._membership.pop(member, None)
        if group is None:
            return
        group.members.discard(member)
        if not group.members:
            self._forget(group)
            if group.task is not None:
                group.task.cancel()

    def _forget(self, group: _Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    @property
    def members(self) -> int:
        return len(self._membership)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # logged by whoever awaits; here only marked as retrieved


_FANOUTS: weakref.WeakKeyDictionary[object, Fanout] = weakref.WeakKeyDictionary()


def fanout_of(app: Bicameral) -> Fanout:
    found = _FANOUTS.get(app)
    if found is None:
        found = _FANOUTS[app] = Fanout(app)
    return found
