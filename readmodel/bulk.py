"""The one place that writes documents to Elasticsearch.

Every write uses external versioning by outbox position, so Elasticsearch
itself refuses to let an older write replace a newer one; a version conflict
therefore means "a newer or equal write is already there" and counts as done.
Items that fail with 429, 5xx or a lost connection are retried with backoff.

A document Elasticsearch refuses for itself (a 400 for that item whose error
is about the document: it does not fit the mapping, holds a reserved
character or an immense term) is not retried, and does not fail the others:
`write_all` returns it as `Refused` and the caller decides (the feed
quarantines it, readmodel/quarantine.py). Anything else, a 4xx about the
target (a missing index, a write block, an alias without a write index) or
retries given up, fails the whole call with `BulkError`, so the caller's
checkpoint stays put and the batch is tried again.

One call can carry the documents of several read models (`write_all`: the
feed's one request per cycle), and each batch can go to more than one
target: the feed writes to the read model's alias and, while a rebuild is
under way, to the alias of the index being built (`also`). Those extra
aliases are looked up on every call, all in one request, after the caller
read its events (readmodel/rebuild.py says why that order matters), and
written with `require_alias`, so an alias that vanishes meanwhile (the
rebuild swapped it live) fails its items with 404, which count as done,
instead of auto-creating an index of that name.

A caller that writes several batches in a row may leave them unrefreshed
(`refresh=False`) and make them searchable together with one `refresh` of
every target it wrote to: the feed does so while it catches up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from readmodel.instruments import BULK_RETRIES
from readmodel.projections import Action, DeleteDocument

__all__ = ["BulkError", "BulkWriter", "DocumentsRefused", "Refused", "Write", "refused_for_itself"]

log = logging.getLogger(__name__)

_RETRYABLE = {429, 500, 502, 503, 504}
_T = TypeVar("_T")


# Error types Elasticsearch gives a document it cannot take as it is; the same
# document would be refused again, however often it were sent.
_DOCUMENT_ERRORS = frozenset(
    {
        "document_parsing_exception",
        "mapper_parsing_exception",
        "strict_dynamic_mapping_exception",
        "illegal_argument_exception",
        "max_bytes_length_exceeded_exception",
    }
)
# ... except these illegal_argument_exceptions, which are about the target, not
# the document (an alias over several indexes and no write index): every
# document sent there would fail alike, and a fix of the aliases cures them all.
_TARGET_PROBLEMS = ("no write index is defined", "alias [")
# Where a reason is cut: Elasticsearch quotes the field's value in it (40 KB of it).
_REASON_LENGTH = 1000


class BulkError(RuntimeError):
    """Items of a bulk request failed for good; the batch did not apply."""


@dataclass(frozen=True)
class Refused:
    """A document Elasticsearch refused for itself, and why."""

    # The index or alias it was written to, and the action.
    target: str
    action: Action
    status: int
    error_type: str
    reason: str


class DocumentsRefused(BulkError):
    """`write` was refused documents (`write_all` returns them instead)."""

    def __init__(self, refused: Sequence[Refused]) -> None:
        self.refused = list(refused)
        shown = [f"{r.target}/{r.action.id}: {r.error_type} {r.reason[:200]}" for r in refused[:3]]
        super().__init__(f"{len(self.refused)} documents refused: {shown}")


def refused_for_itself(status: int, error: Any) -> tuple[str, str] | None:
    """(error type, reason) when a bulk item's failure is the document's own, else None.

    Only a 400 whose error is about the document: a 403 (a write block), a 404
    (no such index), a 429 or a 5xx are about the cluster and pass with time or
    an operator's fix, so the batch is retried with its checkpoint kept.
    """
    if status != 400 or not isinstance(error, dict):
        return None
    kind = str(error.get("type", ""))
    reason = str(error.get("reason", ""))
    if kind not in _DOCUMENT_ERRORS:
        return None
    if kind == "illegal_argument_exception" and reason.startswith(_TARGET_PROBLEMS):
        return None
    caused_by = error.get("caused_by")
    if isinstance(caused_by, dict) and caused_by.get("reason"):
        reason = f"{reason} (caused by {caused_by.get('type')}: {caused_by.get('reason')})"
    if len(reason) > _REASON_LENGTH:
        reason = reason[: _REASON_LENGTH - 1] + "…"
    # The reason quotes the document, and is stored: no NUL (PostgreSQL's text
    # refuses it) nor lone surrogate (no UTF-8 for it) may pass.
    reason = reason.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()
    return kind, reason


@dataclass(frozen=True)
class Write:
    """Actions for one index (or alias), and aliases to copy them to if they exist."""

    index: str
    actions: Sequence[Action]
    also: Sequence[str] = ()


class BulkWriter:
    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        max_attempts: int = 8,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
    ) -> None:
        self.client = client
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    async def write(
        self,
        index: str,
        actions: Sequence[Action],
        *,
        refresh: bool = True,
        also: Sequence[str] = (),
    ) -> None:
        """Apply every action or raise; with `refresh`, make them searchable before returning.

        Each action goes to `index` and to every alias in `also` that exists now.
        Documents refused for themselves raise `DocumentsRefused`, after the
        others were applied.
        """
        refused = await self.write_all([Write(index, actions, also)], refresh=refresh)
        if refused:
            raise DocumentsRefused(refused)

    async def write_all(self, writes: Sequence[Write], *, refresh: bool = True) -> list[Refused]:
        """`write` for several targets at once: one bulk request (and one refresh).

        Every action is applied but those returned: the documents Elasticsearch
        refused for themselves. Anything else that fails raises `BulkError`.
        """
        if not any(w.actions for w in writes):
            return []
        existing = await self._existing_aliases([a for w in writes if w.actions for a in w.also])
        pending: list[tuple[_Target, Action]] = []
        for w in writes:
            targets = [_Target(w.index, optional=False)]
            targets += [_Target(alias, optional=True) for alias in w.also if alias in existing]
            pending += [(target, action) for target in targets for action in w.actions]
        attempt = 0
        refused: list[Refused] = []
        while pending:
            attempt += 1
            try:
                # Bytes are sent as they are (the client's ndjson serializer passes them on).
                body = cast(Any, _ndjson(_operations(pending)))
                response = await self.client.bulk(operations=body, refresh=refresh)
            except TransportError as error:  # connection refused, reset, timed out
                await self._backoff(attempt, f"no answer from Elasticsearch: {error}")
                continue
            except ApiError as error:
                if error.status_code in _RETRYABLE:
                    await self._backoff(attempt, f"status {error.status_code}")
                    continue
                raise
            retry: list[tuple[_Target, Action]] = []
            failed: list[str] = []
            for (target, action), item in zip(pending, response["items"], strict=True):
                result = next(iter(item.values()))
                status = result.get("status", 500)
                if status < 300 or status == 409:
                    continue  # done, or a newer version is already there
                if status == 404 and isinstance(action, DeleteDocument):
                    continue  # already gone
                if status == 404 and target.optional:
                    continue  # the rebuild's alias is gone: swapped live or dropped
                if status in _RETRYABLE:
                    retry.append((target, action))
                elif own := refused_for_itself(status, result.get("error")):
                    refused.append(Refused(target.name, action, status, *own))
                else:
                    failed.append(f"{target.name}/{action.id}: {status} {result.get('error')}")
            if failed:
                raise BulkError(f"{len(failed)} documents failed: {failed[:3]}")
            pending = retry
            if pending:
                await self._backoff(attempt, f"{len(pending)} items to retry")
        return refused

    async def refresh(self, targets: Collection[str]) -> None:
        """Make what earlier `write_all(refresh=False)` calls wrote to `targets` searchable,
        in one request. A target that is gone by now (a rebuild's `-next`, removed when
        its index went live behind the read model's alias) is skipped: what was written
        through it is refreshed through the alias it now serves under."""
        if not targets:
            return
        await self._retried(
            lambda: self.client.indices.refresh(
                index=",".join(sorted(targets)), ignore_unavailable=True
            )
        )

    async def _existing_aliases(self, aliases: Sequence[str]) -> set[str]:
        """Which of `aliases` exist now, in one request (none asked: none sent)."""
        if not aliases:
            return set()
        # _cat/aliases lists the named aliases that exist and leaves out the rest
        # (GET _alias answers 404 as soon as one of them is missing).
        found = await self._retried(
            lambda: self.client.cat.aliases(name=",".join(aliases), format="json", h="alias")
        )
        # With format=json the body is a list of rows (typed str | list).
        rows = cast(list[dict[str, str]], found.body)
        return {row["alias"] for row in rows} & set(aliases)

    async def _retried(self, request: Callable[[], Awaitable[_T]]) -> _T:
        """One request, sent again (with backoff) while Elasticsearch does not answer
        or answers a status that passes with time; any other status is raised."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await request()
            except TransportError as error:
                await self._backoff(attempt, f"no answer from Elasticsearch: {error}")
            except ApiError as error:
                if error.status_code not in _RETRYABLE:
                    raise
                await self._backoff(attempt, f"status {error.status_code}")

    async def _backoff(self, attempt: int, reason: str) -> None:
        if attempt >= self.max_attempts:
            raise BulkError(f"gave up after {attempt} attempts: {reason}")
        BULK_RETRIES.inc()
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        log.warning("bulk write retry %d in %.2fs: %s", attempt, delay, reason)
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class _Target:
    name: str
    # An alias that may vanish under us: never auto-create an index in its place.
    optional: bool


def _ndjson(operations: list[dict[str, Any]]) -> bytes | list[dict[str, Any]]:
    """The bulk body, one JSON line per operation, encoded by orjson: the client's
    own serializer (json.dumps per line) took about a fifth of the worker's CPU in
    a catch-up (docs/performance.md, path 4), orjson a fraction of that. The same
    JSON (compact, UTF-8 as is). What orjson refuses (a lone surrogate, a type it
    does not know, an integer beyond 64 bits) goes as the list, which the client
    serializes as before."""
    try:
        return b"".join(
            [orjson.dumps(operation, option=orjson.OPT_APPEND_NEWLINE) for operation in operations]
        )
    except TypeError:  # orjson.JSONEncodeError is one
        return operations


def _operations(pending: Sequence[tuple[_Target, Action]]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for target, action in pending:
        meta: dict[str, Any] = {
            "_index": target.name,
            "_id": action.id,
            "version": action.version,
            "version_type": "external",
        }
        if target.optional:
            meta["require_alias"] = True
        if isinstance(action, DeleteDocument):
            ops.append({"delete": meta})
        else:
            ops.append({"index": meta})
            ops.append(action.document)
    return ops
