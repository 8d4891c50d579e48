"""Documents Elasticsearch refused for themselves, set aside so the feed moves on.

A document that does not fit its mapping (a value out of a field's range, a
term longer than Lucene takes, a character the completion field reserves)
would be refused again on every retry, and since one feed cycle carries every
projection, retrying it for ever would stop every read model. So the feed
records it here, in the write database, in the same transaction that moves the
checkpoints past it (`settle`, called by `Checkpoints.advance`): a worker that
dies before that commit records nothing and moves nothing, and the batch is
replayed; one that commits has done both. Failures that pass with time (429,
5xx, a lost connection, a missing index or a write block) are never recorded:
the batch is retried with its checkpoint kept (readmodel/bulk.py decides which
is which).

An entry is one (read model, index, document). A later refusal of the same
document updates it (attempts + 1, the new reason, more positions). A later
write of the same document that Elasticsearch takes marks it superseded: the
index holds a whole, newer document, so nothing is missing any more; the
entry stays, for the operator to see what was refused, until dropped. Only
entries not superseded count as quarantined (status, /metrics, tokens).

A rebuild records the documents its load was refused the same way, for the
new index, just before its swap, and after the swap supersedes the entries
whose document the new index holds (readmodel/rebuild.py).

The operator's side (`bicameral readmodel quarantine list|retry|drop`):
`retry` rebuilds the documents from the write database now and writes them
with the outbox head as external version, as a rebuild's load does (a newer
write already there wins, and counts as done); a document taken clears its
entry, one refused again keeps it with attempts + 1 and the new reason.
`drop` forgets entries; the documents stay as they are in the index (stale or
missing) until a later event or a rebuild writes them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.bulk import BulkWriter, Write
from readmodel.projections import Action, DeleteDocument, IndexDocument, Projection
from writemodel import outbox
from writemodel.database import as_utc, read_only
from writemodel.tables import quarantine

__all__ = ["Entry", "Quarantine", "Refusal", "RetryResult", "settle"]

# The positions an entry keeps: the newest, should a document be refused many times.
_MAX_POSITIONS = 1000


@dataclass(frozen=True)
class Refusal:
    """A document the feed sets aside: what `settle` records."""

    read_model: str
    index_name: str
    document_id: str
    version: int
    # Positions of the events (their commands' transactions) that produced it.
    positions: Sequence[int]
    error_type: str
    reason: str


@dataclass(frozen=True)
class Entry:
    """One row of the quarantine."""

    id: int
    read_model: str
    index_name: str
    document_id: str
    version: int
    positions: list[int]
    error_type: str
    reason: str
    first_seen: datetime
    last_seen: datetime
    attempts: int
    superseded_at: datetime | None

    @property
    def active(self) -> bool:
        """Still missing from (or stale in) the index: not superseded by a later write."""
        return self.superseded_at is None


@dataclass(frozen=True)
class RetryResult:
    # Written now (or a newer write was there already): their entries are gone.
    cleared: list[Entry]
    # Refused again: kept, with attempts + 1 and the new reason.
    refused: list[Entry]
    # Of a read model no projection serves any more: left as they are.
    skipped: list[Entry]


def _entry(row: Row[Any]) -> Entry:
    return Entry(
        id=row.id,
        read_model=row.read_model,
        index_name=row.index_name,
        document_id=row.document_id,
        version=row.version,
        positions=list(row.positions),
        error_type=row.error_type,
        reason=row.reason,
        first_seen=as_utc(row.first_seen),
        last_seen=as_utc(row.last_seen),
        attempts=row.attempts,
        superseded_at=None if row.superseded_at is None else as_utc(row.superseded_at),
    )


async def settle(
    conn: AsyncConnection,
    moved: Collection[str],
    refusals: Sequence[Refusal],
    written: Mapping[str, Collection[str]],
    now: datetime,
) -> None:
    """In the caller's transaction (the one that advances the checkpoints of `moved`):
    record `refusals`, and mark superseded the entries of documents `written`
    (read model -> ids Elasticsearch took). Read models not in `moved` are left
    alone: the worker that moves them will settle them."""
    if not moved:
        return
    taken = {name: set(ids) for name, ids in written.items() if name in moved and ids}
    if taken:
        active = await conn.execute(
            select(quarantine.c.id, quarantine.c.read_model, quarantine.c.document_id).where(
                quarantine.c.read_model.in_(sorted(taken)), quarantine.c.superseded_at.is_(None)
            )
        )
        superseded = [id for id, name, doc in active if doc in taken[name]]
        if superseded:
            await conn.execute(
                update(quarantine).where(quarantine.c.id.in_(superseded)).values(superseded_at=now)
            )
    for refusal in refusals:
        if refusal.read_model in moved:
            await _record(conn, refusal, now)


async def _record(conn: AsyncConnection, refusal: Refusal, now: datetime) -> None:
    key = (
        quarantine.c.read_model == refusal.read_model,
        quarantine.c.index_name == refusal.index_name,
        quarantine.c.document_id == refusal.document_id,
    )
    found = (
        await conn.execute(
            select(quarantine.c.id, quarantine.c.version, quarantine.c.positions).where(*key)
        )
    ).first()
    if found is None:
        positions = sorted(set(refusal.positions))[-_MAX_POSITIONS:]
        await conn.execute(
            insert(quarantine).values(
                read_model=refusal.read_model,
                index_name=refusal.index_name,
                document_id=refusal.document_id,
                version=refusal.version,
                positions=positions,
                first_position=positions[0],
                last_position=positions[-1],
                error_type=refusal.error_type,
                reason=refusal.reason,
                first_seen=now,
                last_seen=now,
                attempts=1,
            )
        )
        return
    positions = sorted(set(found.positions) | set(refusal.positions))[-_MAX_POSITIONS:]
    await conn.execute(
        update(quarantine)
        .where(quarantine.c.id == found.id)
        .values(
            version=max(found.version, refusal.version),
            positions=positions,
            first_position=positions[0],
            last_position=positions[-1],
            error_type=refusal.error_type,
            reason=refusal.reason,
            last_seen=now,
            attempts=quarantine.c.attempts + 1,
            superseded_at=None,
        )
    )


class Quarantine:
    """The quarantine table, for the API (tokens), /metrics, status and the CLI."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def entries(self, ids: Collection[int] | None = None) -> list[Entry]:
        """Every entry (or those of `ids`), oldest first."""
        query = select(quarantine).order_by(quarantine.c.id)
        if ids is not None:
            query = query.where(quarantine.c.id.in_(sorted(ids)))
        async with read_only(self.engine) as conn:
            return [_entry(row) for row in await conn.execute(query)]

    async def counts(self) -> dict[str, int]:
        """Read model -> documents quarantined and not superseded (absent: none).

        Documents, not entries: one document can have an entry per index it was
        refused by (the alias, a rebuild's `-next`, the index a rebuild built)."""
        async with read_only(self.engine) as conn:
            rows = await conn.execute(
                select(quarantine.c.read_model, func.count(quarantine.c.document_id.distinct()))
                .where(quarantine.c.superseded_at.is_(None))
                .group_by(quarantine.c.read_model)
            )
            return {name: int(count) for name, count in rows}

    async def active(self, read_model: str) -> list[Entry]:
        """The entries of `read_model` not superseded, oldest first."""
        async with read_only(self.engine) as conn:
            rows = await conn.execute(
                select(quarantine)
                .where(quarantine.c.read_model == read_model, quarantine.c.superseded_at.is_(None))
                .order_by(quarantine.c.id)
            )
            return [_entry(row) for row in rows]

    async def supersede(
        self, read_model: str, present: Mapping[str, int], now: datetime
    ) -> list[Entry]:
        """Mark superseded the active entries of `read_model` whose document the
        index now serving holds at the entry's version or newer (`present`:
        document id -> the version the index holds); those entries. A rebuild
        calls it after its swap (readmodel/rebuild.py)."""
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                select(quarantine).where(
                    quarantine.c.read_model == read_model,
                    quarantine.c.superseded_at.is_(None),
                    quarantine.c.document_id.in_(sorted(present)),
                )
            )
            done = []
            for entry in map(_entry, rows):
                if entry.version > present[entry.document_id]:
                    continue  # the index holds an older document than the one refused
                # Unless the feed refused it again meanwhile, for a newer write.
                changed = await conn.execute(
                    update(quarantine)
                    .where(
                        quarantine.c.id == entry.id,
                        quarantine.c.version == entry.version,
                        quarantine.c.superseded_at.is_(None),
                    )
                    .values(superseded_at=now)
                )
                if changed.rowcount:
                    done.append(entry)
            return done

    async def at(self, position: int, names: Collection[str]) -> list[Entry]:
        """The documents of `names` that the events at `position` (a consistency
        token: a command's last event) produced and Elasticsearch refused, still
        missing: the read has reached the token, without them."""
        async with read_only(self.engine) as conn:
            rows = await conn.execute(
                select(quarantine)
                .where(
                    quarantine.c.read_model.in_(sorted(names)),
                    quarantine.c.first_position <= position,
                    quarantine.c.last_position >= position,
                    quarantine.c.superseded_at.is_(None),
                )
                .order_by(quarantine.c.id)
            )
            return [entry for entry in map(_entry, rows) if position in entry.positions]

    async def drop(self, ids: Collection[int] | None = None) -> int:
        """Forget the entries of `ids` (None: all); how many there were."""
        query = delete(quarantine)
        if ids is not None:
            query = query.where(quarantine.c.id.in_(sorted(ids)))
        async with self.engine.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def retry(
        self,
        ids: Collection[int] | None,
        *,
        projections: Sequence[Projection],
        writer: BulkWriter,
        prefix: str,
        now: datetime,
    ) -> RetryResult:
        """Write the documents of these entries (None: all) again, as the write
        database has them now. Transient failures raise (`BulkError`), entries kept."""
        entries = await self.entries(ids)
        by_name = {p.name: p for p in projections}
        skipped = [e for e in entries if e.read_model not in by_name]
        entries = [e for e in entries if e.read_model in by_name]
        if not entries:
            return RetryResult([], [], skipped)
        wanted: dict[str, list[str]] = {}
        for entry in entries:
            wanted.setdefault(entry.read_model, [])
            if entry.document_id not in wanted[entry.read_model]:
                wanted[entry.read_model].append(entry.document_id)
        # The head first, then the state: the state includes every event up to the
        # head, so the head is a version it may carry (readmodel/rebuild.py, step c).
        async with read_only(self.engine) as conn:
            head, _ = await outbox.head(conn)
            writes = []
            for name, doc_ids in wanted.items():
                docs = await by_name[name].documents(conn, doc_ids)
                actions: list[Action] = [
                    IndexDocument(id, head, {**docs[id], "position": head})
                    if id in docs
                    else DeleteDocument(id, head)
                    for id in doc_ids
                ]
                index = by_name[name].index
                writes.append(Write(index.alias(prefix), actions, also=(index.next_alias(prefix),)))
        refused = {
            (_read_model(r.target, by_name.values(), prefix), r.action.id): r
            for r in await writer.write_all(writes)
        }
        cleared: list[Entry] = []
        again: list[Entry] = []
        async with self.engine.begin() as conn:
            for entry in entries:
                refusal = refused.get((entry.read_model, entry.document_id))
                if refusal is None:
                    # Unless the feed refused the document again meanwhile, for a
                    # newer event: that entry stays.
                    gone = await conn.execute(
                        delete(quarantine).where(
                            quarantine.c.id == entry.id, quarantine.c.version <= head
                        )
                    )
                    (cleared if gone.rowcount else again).append(entry)
                else:
                    await conn.execute(
                        update(quarantine)
                        .where(quarantine.c.id == entry.id)
                        .values(
                            error_type=refusal.error_type,
                            reason=refusal.reason,
                            last_seen=now,
                            attempts=quarantine.c.attempts + 1,
                            superseded_at=None,
                        )
                    )
                    again.append(entry)
        return RetryResult(cleared, again, skipped)


def _read_model(target: str, projections: Collection[Projection], prefix: str) -> str | None:
    for projection in projections:
        if target in (projection.index.alias(prefix), projection.index.next_alias(prefix)):
            return projection.name
    return None
