"""What every mutation does: run one command on behalf of the caller, answer
with the changed object as the read model will hold it, or with a typed error.

One object, one truth per id: a client's cache (Apollo's, urql's, Relay's)
keeps one record per `Product:<id>`, `Order:<id>`, `Customer:<id>`, fed by
mutations and queries alike. So a mutation does not describe its object from
the write side's snapshot (which lacks what only the read model fills: the
customer's name on an order, a line's product name, `updatedAt`, a customer's
lifetime figures); it answers with the document the read model's projection
builds, read from the write database right after the commit by the same
builder (`Bicameral.document`): field for field what a query with the
returned consistencyToken shows. It costs one read by primary key after the
commit (one statement; an order's lines come with it).

An idempotent replay answers with the object as it is now, not as the first
answer showed it: the first answer may be older than what the client's cache
already holds (a later write, a rename, more orders), and writing it over
the record would roll the cache back. The token stays the first one; a query
with it shows the object as it is now too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, ParamSpec, TypeVar, cast

import strawberry
from graphql import GraphQLError

from api import telemetry
from api.context import Context
from api.errors import Error, to_error
from api.identity import Identity
from api.instruments import counted_command
from domain.commands import Command
from domain.errors import DomainError, InvalidInput
from domain.rules import TextMustBeClean
from readmodel.projections import D, Projection
from writemodel.access import Actor
from writemodel.database import is_database_fault
from writemodel.service import CommandOutcome
from writemodel.unit_of_work import CommitOutcomeUnknown, WriteDatabaseUnavailable

__all__ = [
    "MAX_KEY_LENGTH",
    "Answer",
    "IdempotencyKey",
    "MutationSuccess",
    "actor_of",
    "execute",
    "expected_version",
    "returns_errors",
]

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200

# Every mutation takes the same key, so it is described once here.
IdempotencyKey = Annotated[
    str | None,
    strawberry.argument(
        description=f"Makes a retry safe: any 1 to {MAX_KEY_LENGTH} characters you choose, "
        "taken exactly as sent. Sent again with the same input (after a timeout or a lost "
        "connection), it answers for the first request with `replayed: true` and writes "
        "nothing twice; with a different input it is refused (RuleBrokenError "
        "IDEMPOTENCY_KEY_REUSED). A key is remembered 24 hours by default. Null: no "
        "protection against applying the change twice."
    ),
]


def expected_version(of: str) -> Any:
    """An `expectedVersion` input field: optimistic concurrency on `of`'s version."""
    return strawberry.field(
        default=None,
        description=f"Optimistic concurrency: apply only if {of} is still at this version "
        "(the one you last read); otherwise nothing is written and the answer is a "
        "VersionConflictError holding the actual version. Null applies the change to "
        "whatever version is current.",
    )


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="MutationSuccess")


@strawberry.interface(description="What every successful mutation answers besides its object.")
class MutationSuccess:
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered for the first request: "
        "nothing was written this time, and the object is shown as it is now."
    )


@dataclass(frozen=True)
class Answer(Generic[D]):
    """A command that applied (or replayed): its object's read-model document and token."""

    document: D
    consistency_token: str
    replayed: bool

    def success(self, kind: type[S], **objects: Any) -> S:
        """The mutation's success payload, with what every one of them carries."""
        return kind(consistency_token=self.consistency_token, replayed=self.replayed, **objects)


class _Refused(Exception):
    """A command refused with a typed error: the mutation answers with it."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.code)
        self.error = error


def returns_errors(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A mutation resolver whose `execute` was refused answers with the typed error.

    Each mutation's union lists the errors its command can end in; this is the
    one place that trusts it, instead of a `type: ignore` in every file."""

    @functools.wraps(resolver)
    async def resolve(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await resolver(*args, **kwargs)
        except _Refused as refused:
            return cast(R, refused.error)

    return resolve


def actor_of(identity: Identity) -> Actor:
    """The command layer's view of a request's identity. Its role is one of
    `api.identity.Role`'s values, none of which is "system": a request can never
    act as `writemodel.access.SYSTEM`."""
    return Actor(
        identity.role.value,
        subject=identity.subject,
        issuer=identity.issuer,
        customer_id=identity.customer_id,
    )


async def execute(
    info: strawberry.Info[Context, None],
    command: Command,
    idempotency_key: str | None,
    projection: Projection[D],
) -> Answer[D]:
    """Run `command`, and answer with the document `projection` builds for the
    object it changed. A refusal ends the resolver (see `returns_errors`)."""
    outcome = await _run(info, command, idempotency_key)
    if isinstance(outcome, Error):
        raise _Refused(outcome)
    return await _answer(info.context, outcome, projection)


async def _answer(
    context: Context, outcome: CommandOutcome, projection: Projection[D]
) -> Answer[D]:
    token = str(outcome.position)
    document = None
    # A pooled connection that died since the commit fails its first statement;
    # one more read on a new connection nearly always does (as for commands).
    for attempt in (1, 2):
        try:
            document = await context.app.document(projection, outcome.snapshot["id"])
            break
        except Exception as error:
            if not is_database_fault(error):
                raise
            log.warning("a committed change could not be read back (try %d): %s", attempt, error)
    if document is None:
        # Committed, so "nothing was written" would be false. COMMIT_OUTCOME_UNKNOWN
        # promises "may or may not have been applied", which holds, and its remedy
        # (send it again with the same key: it replays) answers with the object.
        raise GraphQLError(
            "the change was committed, but the write database could not be reached to "
            "read it back: query it with extensions.consistencyToken, or send it again "
            "with the same idempotencyKey",
            extensions={"code": "COMMIT_OUTCOME_UNKNOWN", "consistencyToken": token},
        )
    return Answer(document, token, outcome.replayed)


@counted_command  # counts each outcome: ok, or the typed error's or GraphQL error's code
async def _run(
    info: strawberry.Info[Context, None], command: Command, idempotency_key: str | None
) -> CommandOutcome | Error:
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            return to_error(
                InvalidInput(
                    f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters",
                    field="idempotencyKey",
                    code="IDEMPOTENCY_KEY_OUT_OF_BOUNDS",
                )
            )
        try:
            # Checked as text, kept as sent: a key is opaque, normalising it would merge two.
            TextMustBeClean.check(idempotency_key, "idempotencyKey", trim=False)
        except DomainError as error:
            return to_error(error)
    context = info.context
    try:
        outcome = await context.app.commands.execute(
            command,
            actor=actor_of(context.identity),
            idempotency_key=idempotency_key,
            correlation_id=context.correlation_id or telemetry.correlation_id(),
        )
    except DomainError as error:
        return to_error(error)
    except WriteDatabaseUnavailable as error:
        # Cannot connect, shutting down, pool exhausted, a timeout, or a connection
        # lost before COMMIT (retried by the command service already): nothing was
        # written (docs/graphql.md, "When the write database fails").
        log.warning("write database unavailable: %s", error)
        raise GraphQLError(
            "the write database could not be reached; nothing was written, try again",
            extensions={"code": "WRITE_DATABASE_UNAVAILABLE"},
        ) from None
    except CommitOutcomeUnknown as error:
        log.warning("commit outcome unknown: %s", error)
        raise GraphQLError(
            "the connection to the write database broke while this change was being "
            "committed: it may or may not have been applied. Send it with an "
            "idempotencyKey to be able to retry safely",
            extensions={"code": "COMMIT_OUTCOME_UNKNOWN"},
        ) from None
    context.app.committed()
    return outcome
