"""Subscriptions over HTTP: the multipart stream Apollo Client reads, and its end
when the caller's token expires (api/http.py serves it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, datetime

from graphql import GraphQLError
from strawberry.http.streaming import (
    MULTIPART_SUBSCRIPTION_BOUNDARY,
    MultipartSubscriptionTransport,
)
from strawberry.types import ExecutionResult

__all__ = ["OPENING", "MultipartSubscription", "until_expired"]


class MultipartSubscription(MultipartSubscriptionTransport):
    """Strawberry's multipart subscription transport, framed as RFC 2046 says: it
    sends no opening delimiter (so a strict parser takes its first part for the
    preamble) and closes with an empty part. Each part starts with a CRLF, so the
    stream opens with CRLF and the delimiter (the view adds it, api/http.py;
    Apollo Client skips the empty text before it), and the last part's delimiter
    becomes the closing one by adding `--`."""

    def encode_complete(self) -> str:
        return "--\r\n"


OPENING = f"\r\n--{MULTIPART_SUBSCRIPTION_BOUNDARY}"


def _token_expired() -> ExecutionResult:
    return ExecutionResult(
        data=None,
        errors=[
            GraphQLError(
                "The bearer token expired: subscribe again with a fresh one, with `after` "
                "set to the last position received",
                extensions={"code": "UNAUTHENTICATED"},
            )
        ],
    )


async def until_expired(
    results: AsyncGenerator[ExecutionResult, None], expires_at: datetime | None
) -> AsyncGenerator[ExecutionResult, None]:
    """A subscription's results until its caller's token expires, then an UNAUTHENTICATED
    error and the end (a WebSocket is closed with 4403 then). The timeout wraps each
    wait, never a `yield`, so it cancels only the subscription's own await."""
    async with aclosing(results):
        while True:
            try:
                if expires_at is None:
                    result = await anext(results)
                else:
                    seconds = (expires_at - datetime.now(UTC)).total_seconds()
                    async with asyncio.timeout(max(seconds, 0)):
                        result = await anext(results)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield _token_expired()
                return
            yield result
