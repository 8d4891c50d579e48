"""The one place that writes documents to Elasticsearch.

Every write uses external versioning by outbox position, so Elasticsearch
itself refuses to let an older write replace a newer one; a version conflict
therefore means "a newer or equal write is already there" and counts as done.
Items that fail with 429, 5xx or a lost connection are retried with backoff;
anything else fails the whole batch, so the caller's checkpoint stays put.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from readmodel.projections import Action, DeleteDocument

__all__ = ["BulkError", "BulkWriter"]

log = logging.getLogger(__name__)

_RETRYABLE = {429, 500, 502, 503, 504}


class BulkError(RuntimeError):
    """Items of a bulk request failed for good; the batch did not apply."""


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

    async def write(self, index: str, actions: Sequence[Action], *, refresh: bool = True) -> None:
        """Apply every action or raise; with `refresh`, make them searchable before returning."""
        pending = list(actions)
        attempt = 0
        while pending:
            attempt += 1
            try:
                response = await self.client.bulk(
                    operations=_operations(index, pending), refresh=refresh
                )
            except TransportError as error:  # connection refused, reset, timed out
                await self._backoff(attempt, f"no answer from Elasticsearch: {error}")
                continue
            except ApiError as error:
                if error.status_code in _RETRYABLE:
                    await self._backoff(attempt, f"status {error.status_code}")
                    continue
                raise
            retry: list[Action] = []
            failed: list[str] = []
            for action, item in zip(pending, response["items"], strict=True):
                result = next(iter(item.values()))
                status = result.get("status", 500)
                if status < 300 or status == 409:
                    continue  # done, or a newer version is already there
                if status == 404 and isinstance(action, DeleteDocument):
                    continue  # already gone
                if status in _RETRYABLE:
                    retry.append(action)
                else:
                    failed.append(f"{action.id}: {status} {result.get('error')}")
            if failed:
                raise BulkError(f"{len(failed)} documents refused by {index}: {failed[:3]}")
            pending = retry
            if pending:
                await self._backoff(attempt, f"{len(pending)} items to retry")

    async def _backoff(self, attempt: int, reason: str) -> None:
        if attempt >= self.max_attempts:
            raise BulkError(f"gave up after {attempt} attempts: {reason}")
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        log.warning("bulk write retry %d in %.2fs: %s", attempt, delay, reason)
        await asyncio.sleep(delay)


def _operations(index: str, actions: Sequence[Action]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for action in actions:
        meta = {
            "_index": index,
            "_id": action.id,
            "version": action.version,
            "version_type": "external",
        }
        if isinstance(action, DeleteDocument):
            ops.append({"delete": meta})
        else:
            ops.append({"index": meta})
            ops.append(action.document)
    return ops
