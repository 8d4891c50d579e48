"""The command service: runs one command in one unit of work.

It adds what no single handler should know about: who may send the command
(writemodel/access.py), idempotency keys scoped to the actor, the
retry of a command that lost an optimistic race it did not ask to guard or
its connection before it could commit, correlation ids, and the consistency
token (the position of the command's last event, or the outbox head when it
changed nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.commands import Command
from domain.errors import ConcurrencyConflict, DomainError, InvalidInput
from writemodel.access import Actor, may_send
from writemodel.handlers import HANDLERS, Context, Handler
from writemodel.unit_of_work import (
    CommitOutcomeUnknown,
    ConnectionLost,
    IdempotencyRace,
    Remember,
    TransientConflict,
    UnitOfWork,
    WriteDatabaseUnavailable,
)

__all__ = ["CommandOutcome", "CommandService", "IdempotencyKeyReused"]

log = logging.getLogger(__name__)


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


@dataclass(frozen=True)
class CommandOutcome:
    kind: str
    snapshot: dict[str, Any]
    # The position a reader must reach to see this command's effect.
    position: int
    # True when an idempotency key answered with the first result, writing nothing.
    replayed: bool = False


def request_hash(command: Command) -> str:
    body = json.dumps(
        {"command": type(command).__name__, "input": asdict(command)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class CommandService:
    # Commands that did not name a version are retried when another writer
    # won the race for the same row: their intent does not depend on it. The
    # losers of one race wake together when the winner commits, so each retry
    # waits a random, growing while, or they would collide again and again.
    max_attempts = 30
    max_backoff = 0.25
    # A pooled connection that died (a restarted server, an idle connection cut)
    # fails the first statement sent on it, and the command runs again on a new
    # one. SQLAlchemy then replaces every older pooled connection, so one more
    # run nearly always does; losing more than two in a row means the database
    # itself is in trouble, and the caller should hear of it.
    max_reconnects = 2

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        *,
        idempotency_ttl: timedelta = timedelta(hours=24),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.unit_of_work = unit_of_work
        self.idempotency_ttl = idempotency_ttl
        self.clock = clock
        self.new_id = new_id

    async def execute(
        self,
        command: Command,
        *,
        actor: Actor,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> CommandOutcome:
        """Run `command` on behalf of `actor`: the API passes the request's identity,
        the demo and tools `access.SYSTEM`; there is no default, so no caller runs a
        command as someone by accident. A role that may not send it is refused
        before any transaction (and before an idempotency key could replay)."""
        may_send(actor, command)
        handler = HANDLERS[type(command)]
        name = type(command).__name__
        correlation_id = correlation_id or str(uuid.uuid4())
        digest = request_hash(command) if idempotency_key else ""
        guarded = getattr(command, "expected_version", None) is not None
        attempt = reconnects = 0
        # Set once a COMMIT went unanswered: from then on, whatever stops the retries
        # by key, the caller must hear that the command may have been applied.
        unanswered: CommitOutcomeUnknown | None = None
        rechecked = False
        while True:
            attempt += 1
            try:
                return await self._attempt(
                    handler, command, actor, idempotency_key, digest, correlation_id
                )
            except WriteDatabaseUnavailable as error:
                # Lost before COMMIT was sent, so nothing was written: run it all
                # again on a new connection. Cannot connect, or it refused: retrying
                # at once would not help.
                retry = isinstance(error, ConnectionLost)
                if retry:
                    reconnects += 1
                    retry = reconnects <= self.max_reconnects and attempt < self.max_attempts
                if not retry:
                    if unanswered is not None:
                        raise CommitOutcomeUnknown(str(unanswered)) from error
                    raise
                log.warning("retrying %s on a new connection: the last one broke", name)
            except (ConcurrencyConflict, TransientConflict) as lost:
                # Another writer won the race for a row (or the database broke a
                # deadlock). Nothing was written; a command that named no version
                # runs again from the start, its checks included. One that named
                # a version gets the conflict: its premise is gone.
                conflict = isinstance(lost, ConcurrencyConflict)
                if conflict and guarded:
                    raise
                if attempt >= self.max_attempts:
                    if unanswered is not None:
                        raise CommitOutcomeUnknown(str(unanswered)) from lost
                    if isinstance(lost, ConcurrencyConflict):
                        # No expectedVersion was sent: the conflict names no input.
                        lost.field = None
                        raise
                    # Deadlocks or serialization failures every time: nothing was
                    # written, and the database is too contended to say more.
                    raise WriteDatabaseUnavailable(
                        f"{name} lost {attempt} races in a row: {lost}"
                    ) from lost
                log.info("retrying %s after a concurrent write", name)
                # The unit of work has rolled back and let go of its connection
                # (on SQLite, of the write lock) before this wait.
                await asyncio.sleep(random.uniform(0, min(self.max_backoff, 0.002 * 2**attempt)))
            except IdempotencyRace as race:
                if attempt >= self.max_attempts:
                    if unanswered is not None:
                        raise CommitOutcomeUnknown(str(unanswered)) from race
                    raise WriteDatabaseUnavailable(
                        f"{name}: its idempotency key stayed contended for {attempt} attempts"
                    ) from race
                # The other request won: the next attempt replays its result.
            except CommitOutcomeUnknown as error:
                # The command may or may not have been applied. Running it again
                # could apply it twice, unless it carries an idempotency key: its
                # key commits with its state, so the next attempt replays the
                # first if that committed, and applies the command if not.
                unanswered = unanswered or error
                reconnects += 1
                if not idempotency_key or reconnects > self.max_reconnects:
                    raise
                log.warning("retrying %s by its idempotency key: its commit went unanswered", name)
            except DomainError as refused:
                # A rule the state decides (an email taken, stock gone) refused the
                # command, and a request with the same key may have committed since
                # this one's recall found nothing: the race with itself. Looking once
                # more replays that result instead of refusing the client's own write.
                if not idempotency_key or rechecked or isinstance(refused, InvalidInput):
                    raise
                rechecked = True

    async def _attempt(
        self,
        handler: Handler,
        command: Command,
        actor: Actor,
        idempotency_key: str | None,
        digest: str,
        correlation_id: str,
    ) -> CommandOutcome:
        """One run of the command in one unit of work, from its checks to its commit."""
        now = self.clock()
        async with self.unit_of_work() as uow:
            scope = actor.idempotency_scope
            if idempotency_key:
                replay = await self._replay(uow, scope, idempotency_key, digest, now)
                if replay is not None:
                    return replay
            changed = await handler(command, uow, Context(now, self.new_id, actor))
            remember = None
            if idempotency_key:
                remember = Remember(
                    scope,
                    idempotency_key,
                    digest,
                    {"kind": changed.kind, "snapshot": changed.snapshot},
                    now + self.idempotency_ttl,
                )
            position = await uow.commit(
                correlation_id=correlation_id, now=now, actor=actor, remember=remember
            )
        return CommandOutcome(changed.kind, changed.snapshot, position)

    async def _replay(
        self, uow: UnitOfWork, scope: str, key: str, digest: str, now: datetime
    ) -> CommandOutcome | None:
        remembered = await uow.recall(scope, key, now)
        if remembered is None:
            return None
        if remembered.request_hash != digest:
            raise IdempotencyKeyReused(
                "this idempotency key was used with a different input", field="idempotencyKey"
            )
        result = remembered.result
        return CommandOutcome(result["kind"], result["snapshot"], result["position"], True)
