"""What every mutation does: run one command on behalf of the caller, turn a
domain error into a typed one."""

from __future__ import annotations

import logging

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
from writemodel.access import Actor
from writemodel.service import CommandOutcome
from writemodel.unit_of_work import CommitOutcomeUnknown, WriteDatabaseUnavailable

__all__ = ["MAX_KEY_LENGTH", "actor_of", "execute"]

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200


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


@counted_command
async def execute(
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
