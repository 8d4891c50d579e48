"""The feed worker: outbox -> projections -> Elasticsearch -> checkpoints.

One loop; each cycle serves every partition of every read model this worker
holds the lease of, together (readmodel/partitions.py: how a read model is
split, why that is correct, who owns which partition, the fast failover on
PostgreSQL): read their checkpoints (one query), read the outbox once from the
lowest of them with the gap-safe read, let each projection build the
documents its own events touch (the events of the partitions it holds, past
each partition's checkpoint; one call per read model, whatever the number of
partitions), write all of them in one bulk request
(refreshed, so searchable), and only then advance the checkpoints (one
transaction, which on PostgreSQL also NOTIFYs other processes). A checkpoint
never gets ahead of what is searchable: a consistency token it reaches finds
every document up to it (readmodel/progress.py). A crash
anywhere before the advance replays the batch, which external versioning
makes harmless. A document Elasticsearch refuses for itself does not hold the
batch: it is quarantined in the checkpoints' transaction and the cycle moves
past it (readmodel/quarantine.py); failures that pass with time keep the
checkpoints where they are, and the batch is tried again. The loop wakes on
a signal (a commit in this process, or LISTEN/NOTIFY on PostgreSQL) and polls
anyway, so a lost wake-up costs latency, never data.

What a cycle costs is mostly fixed (round trips and a refresh), so the
worker lets batches grow with the load:
- a lease is renewed only once half of it is spent; a worker that does not
  hold every partition also looks for partitions to take (free, expired, or
  orphaned by a dead worker on PostgreSQL) at most every `takeover_interval`
  seconds; one holding them all looks for nothing, so it costs what a single
  worker always cost;
- after a full batch the next read is larger (up to `catch_up_factor` times
  the batch size), and it is read and projected while the full one is being
  written: the write database and Elasticsearch work at once, and nothing
  advances out of order, since checkpoints still move only after the bulk;
- a full batch past which more than that largest read is committed means a
  backlog: it is written without a refresh, and so are the batches after it,
  until one has less than that behind it or `refresh_interval` seconds have
  passed since the first of them. Then one refresh of every index they wrote
  to makes them all searchable, and only after it do their checkpoints
  advance, batch by batch, and their listeners hear of them. A backlog thus
  costs about one refresh per `refresh_interval` instead of one per batch,
  and a token is reached only once everything up to it is searchable. Should
  a checkpoint move meanwhile (a reset, another worker), the unrefreshed
  batches are forgotten and read again from the checkpoints: what they wrote
  stays, and external versioning makes writing it again harmless;
- after a small batch the worker lingers (`linger` seconds) before the next
  cycle only when commits come several times faster than a cycle takes: the
  batch held at least `linger_commands` commands' events (the commits of
  one cycle's time: a measure of the write rate in cycles) and another
  commit arrived while the cycle ran. Waiting then lets the next batch
  gather many of them rather than run one cycle per few commits (each
  cycle's refresh and round trips cost the write side CPU). Otherwise (a
  trickle, an idle system) the next commit wakes it at once, or a commit
  that came during the cycle is applied by the next one straight away: a
  trickle pays no linger. The threshold is several commands, not two: at 20
  writes/s a cycle of about 50 ms (a bulk request and its refresh) often
  holds two, and lingering then would add the whole linger to most writes'
  staleness for no saving worth having (bench path 6, the trickle row).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.bulk import BulkWriter, Refused, Write
from readmodel.checkpoints import Checkpoints
from readmodel.instruments import batch as measured_batch
from readmodel.instruments import link_to_commands
from readmodel.partitions import AdvisoryLocks, partition_of, read_model_of, slot_names
from readmodel.projections import Projection
from readmodel.quarantine import Quarantine, Refusal
from readmodel.setup import prepare
from writemodel import outbox
from writemodel.database import is_postgres, read_only
from writemodel.outbox import StoredEvent

__all__ = ["Applied", "FeedWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """A batch a read model's partitions (some or all) have applied and made searchable."""

    # The read model.
    projection: str
    # The events of the batch those partitions take (maybe none).
    events: list[StoredEvent]
    # The checkpoint they reached: every event of theirs up to here is applied
    # (the read model as a whole has reached it once every partition has).
    position: int
    # The partitions that reached it.
    partitions: tuple[int, ...] = ()


Listener = Callable[[Applied], Awaitable[None]]


@dataclass(frozen=True)
class _Prepared:
    """A batch read and projected, not yet written."""

    # Where each held partition (checkpoint row) stood when it was read.
    positions: dict[str, int]
    # How many events were asked for: as many came back means a backlog.
    size: int
    batch: list[StoredEvent]
    # The partitions (rows) the batch takes further; each read model's events and writes.
    behind: list[str]
    taken: dict[str, list[StoredEvent]]
    writes: list[Write]
    # Events committed past this batch when it was read (counted for a full batch only).
    remaining: int = 0


@dataclass(frozen=True)
class _Written:
    """A batch written, its checkpoints still to advance (once it is searchable)."""

    end: int
    behind: list[str]
    taken: dict[str, list[StoredEvent]]
    refusals: list[Refusal]
    written: dict[str, set[str]]


@dataclass
class _Backlog:
    """Batches written without a refresh while catching up: none of them is
    searchable for sure, so none of their checkpoints has moved."""

    # The held projections' checkpoints as stored (position, time of the last
    # change) when the first was written: any change voids the backlog.
    stored: dict[str, tuple[int, datetime | None]]
    # Where the held projections stand once the batches are applied.
    reached: dict[str, int]
    began: float  # time.monotonic() at the first batch
    # Every index or alias the batches wrote to, to refresh.
    targets: set[str]
    batches: list[_Written]


class FeedWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        client: AsyncElasticsearch,
        projections: list[Projection],
        *,
        index_prefix: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease: timedelta = timedelta(seconds=15),
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        notify_channel: str | None = None,
        catch_up_factor: int = 4,
        linger: float = 0.1,
        linger_commands: int = 3,
        refresh_interval: float = 1.0,
        partitions: int = 4,
        takeover_interval: float = 0.5,
    ) -> None:
        self.engine = engine
        self.projections = projections
        self.index_prefix = index_prefix
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock
        # PostgreSQL: a channel NOTIFYed, in the checkpoints' transaction, after each cycle.
        self.notify_channel = notify_channel
        self.catch_up_factor = max(1, catch_up_factor)
        self.linger = linger
        # How many commands a batch holds before commits count as coming fast.
        self.linger_commands = max(2, linger_commands)
        # While catching up, the longest a written batch waits for its refresh.
        self.refresh_interval = refresh_interval
        self.partitions = max(1, partitions)
        # A worker short of its share, or holding less than everything, looks for
        # partitions to take at most this often (readmodel/partitions.py).
        self.takeover_interval = takeover_interval
        # Every partition's checkpoint row -> (read model, partition).
        self._slots = {
            row: (p.name, number)
            for p in projections
            for number, row in enumerate(slot_names(p.name, self.partitions))
        }
        self._projection_of = {p.name: p for p in projections}
        # PostgreSQL: the locks that end with this worker's connection (fast failover).
        self._locks = AdvisoryLocks(engine, self.owner) if is_postgres(engine) else None
        self._probed = -math.inf  # time.monotonic() of the last look for partitions
        self.checkpoints = Checkpoints(engine)
        self.writer = BulkWriter(client)
        self.quarantine = Quarantine(engine)
        # Alias (and rebuild alias) -> the read model written through it.
        self._read_model_of = {
            alias: p.name
            for p in projections
            for alias in (p.index.alias(index_prefix), p.index.next_alias(index_prefix))
        }
        self.client = client
        self.listeners: list[Listener] = []
        self._indexes_ready = False
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        # The partitions (rows) whose lease this worker holds, and until when (as it last set them).
        self._held: dict[str, datetime] = {}
        self._read_size = batch_size
        self._running = False
        # The next batch, read and projected while the current one is written.
        self._prefetch: asyncio.Task[_Prepared | None] | None = None
        self._rows_ready = False  # the checkpoints' rows exist
        self._backlog: _Backlog | None = None
        # The commands (transactions) whose events the last batch held.
        self._commands = 0

    def wake(self) -> None:
        """New events may be there: look now instead of at the next poll."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        log.info("feed worker %s started", self.owner)
        self._running = True
        failures = 0
        try:
            while not self._stopping.is_set():
                # Cleared before the cycle reads, so a commit during the cycle wakes the next.
                self._wakeup.clear()
                try:
                    applied = await self.run_once()
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.exception("feed batch failed; checkpoints kept, retrying in %.1fs", delay)
                    await self._pause(delay)  # commits meanwhile do not cut the back-off short
                    continue
                if applied == 0:
                    await self._sleep(self.poll_interval)
                elif applied < self.batch_size:
                    busy = self._commands >= self.linger_commands
                    if self._wakeup.is_set() and busy and self.linger > 0:
                        # Commits come several times faster than a cycle takes: let
                        # the next few gather before the next cycle.
                        await self._pause(self.linger)
                    elif not self._wakeup.is_set():
                        # Caught up and nothing new: the next commit wakes us at once
                        # (a trickle pays no linger); the poll covers a lost wake-up.
                        await self._sleep(self.poll_interval)
        finally:
            self._running = False
            await self.release_leases()
            log.info("feed worker %s stopped", self.owner)

    async def release_leases(self) -> None:
        """Give up every lease this worker holds, so another can take over at once."""
        await self._discard_prefetch()
        # Written but not refreshed: its checkpoints stay, the next owner writes it again.
        self._backlog = None
        self._held.clear()
        try:
            await self.checkpoints.release(list(self._slots), self.owner)
            await self.checkpoints.retire(self.owner)
        except Exception:  # the leases will expire by themselves
            log.warning("could not release the leases of %s", self.owner)
        if self._locks is not None:
            await self._locks.close()

    async def _sleep(self, seconds: float) -> None:
        """Until woken, stopped, or `seconds` have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        self._wakeup.clear()

    async def _pause(self, seconds: float) -> None:
        """`seconds`, however often woken; cut short only by stop()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    @measured_batch
    async def run_once(self) -> int:
        """One cycle over the partitions this worker holds; the events it read."""
        if not self._indexes_ready:
            await prepare(
                self.client,
                self.index_prefix,
                self.checkpoints,
                {p.name: p.index for p in self.projections},
            )
            self._indexes_ready = True
        holding = await self._hold_leases()
        held = [row for row in self._slots if row in holding]
        if not held:
            await self._discard_prefetch()
            self._backlog = None
            return 0
        checkpoints = {c.name: c for c in await self.checkpoints.rows()}
        stored = {
            row: (c.position, c.updated_at) if (c := checkpoints.get(row)) else (0, None)
            for row in held
        }
        backlog = self._backlog
        if backlog is not None and backlog.stored != stored:
            # A checkpoint moved under the backlog (a reset, another worker): read
            # again from the checkpoints; what was written is written again, harmlessly.
            log.info("a checkpoint moved while catching up; reading again from it")
            self._backlog = backlog = None
        positions = (
            dict(backlog.reached)
            if backlog is not None
            else {name: position for name, (position, _) in stored.items()}
        )
        prepared = await self._prefetched(positions)
        if prepared is None:
            prepared = await self._prepare(held, positions, self._read_size)
        if prepared is None:
            self._read_size = self.batch_size
            if backlog is not None:  # caught up exactly at the backlog's last batch
                try:
                    await self._refresh_and_advance()
                except BaseException:
                    self._backlog = None
                    raise
            return 0
        batch, end = prepared.batch, prepared.batch[-1].position
        # A transaction's events share their correlation id and time.
        self._commands = len({(e.correlation_id, e.occurred_at) for e in batch})
        link_to_commands(batch)
        # A full batch means a backlog: read more at once, so it is refreshed less
        # often, and read (and project) the next batch while this one is written.
        full = len(batch) == prepared.size
        # Behind by more than the largest read: a backlog (module docstring).
        deep = full and prepared.remaining >= self.batch_size * self.catch_up_factor
        self._read_size = (
            min(prepared.size * 2, self.batch_size * self.catch_up_factor)
            if full
            else self.batch_size
        )
        if full:
            after = {name: max(position, end) for name, position in positions.items()}
            self._prefetch = asyncio.create_task(self._prepare(held, after, self._read_size))
        try:
            if backlog is None and not deep:
                # The common case: one bulk request that refreshes, then the advance.
                refused = await self.writer.write_all(prepared.writes)
                await self._advance([self._written_batch(prepared, refused)])
                return len(batch)
            refused = await self.writer.write_all(prepared.writes, refresh=False)
            if backlog is None:
                backlog = self._backlog = _Backlog(stored, {}, time.monotonic(), set(), [])
            backlog.batches.append(self._written_batch(prepared, refused))
            backlog.targets.update(t for w in prepared.writes for t in (w.index, *w.also))
            backlog.reached = {name: max(position, end) for name, position in positions.items()}
            if not deep or time.monotonic() - backlog.began >= self.refresh_interval:
                await self._refresh_and_advance()
        except BaseException:
            await self._discard_prefetch()
            self._backlog = None
            raise
        return len(batch)

    def _written_batch(self, prepared: _Prepared, refused: list[Refused]) -> _Written:
        refusals = self._refusals(prepared, refused)
        return _Written(
            prepared.batch[-1].position,
            prepared.behind,
            prepared.taken,
            refusals,
            self._written(prepared, refusals),
        )

    async def _refresh_and_advance(self) -> None:
        """Make the backlog searchable with one refresh, then advance its checkpoints."""
        backlog, self._backlog = self._backlog, None
        if backlog is None:
            return
        await self.writer.refresh(backlog.targets)
        await self._advance(backlog.batches)

    async def _advance(self, batches: list[_Written]) -> None:
        """Advance the checkpoints past each batch in turn (each searchable by now),
        settling its quarantine, and tell the listeners."""
        lost: set[str] = set()
        for written in batches:
            moved = await self.checkpoints.advance(
                written.behind,
                self.owner,
                written.end,
                self.clock(),
                notify=self.notify_channel,
                refused=written.refusals,
                written=written.written,
            )
            moved_models = {read_model_of(row) for row in moved}
            for refusal in written.refusals:
                if refusal.read_model in moved_models:
                    log.warning(
                        "%s/%s refused by Elasticsearch (%s: %s); quarantined, the feed goes on",
                        refusal.index_name,
                        refusal.document_id,
                        refusal.error_type,
                        refusal.reason[:300],
                    )
            for name in written.behind:
                if name not in moved and name not in lost:
                    lost.add(name)
                    self._held.pop(name, None)
                    log.warning(
                        "lost the lease of %s before advancing; another worker goes on", name
                    )
            for applied in self._applied(written, moved):
                for listener in self.listeners:
                    await listener(applied)

    def _applied(self, written: _Written, moved: set[str]) -> list[Applied]:
        """One Applied per read model some of whose partitions moved past `written`."""
        partitions: dict[str, list[int]] = {}
        for row in written.behind:
            if row in moved:
                name, number = self._slots[row]
                partitions.setdefault(name, []).append(number)
        applied = []
        for name, numbers in partitions.items():
            events = written.taken.get(name, [])
            if len(numbers) < len(slot_names(name, self.partitions)):
                kept = set(numbers)
                events = [
                    e for e in events if partition_of(e.aggregate_id, self.partitions) in kept
                ]
            applied.append(Applied(name, events, written.end, tuple(numbers)))
        return applied

    def _refusals(self, prepared: _Prepared, refused: list[Refused]) -> list[Refusal]:
        """The documents Elasticsearch refused, as quarantine entries: with the
        positions of the commands (transactions) whose events produced them, so
        that a consistency token, a command's last position, finds its document."""
        if not refused:
            return []
        runs = _transactions(prepared.batch)
        refusals = []
        for item in refused:
            name = self._read_model_of[item.target]
            own = {
                e.position for e in prepared.taken.get(name, ()) if e.aggregate_id == item.action.id
            }
            own.add(item.action.version)
            positions = sorted({p for position in own for p in runs.get(position, (position,))})
            refusals.append(
                Refusal(
                    name,
                    item.target,
                    item.action.id,
                    item.action.version,
                    positions,
                    item.error_type,
                    item.reason,
                )
            )
        return refusals

    def _written(self, prepared: _Prepared, refusals: list[Refusal]) -> dict[str, set[str]]:
        """Read model -> ids of the documents Elasticsearch took in this cycle."""
        written: dict[str, set[str]] = {}
        for write in prepared.writes:
            name = self._read_model_of[write.index]
            written.setdefault(name, set()).update(action.id for action in write.actions)
        for refusal in refusals:
            written.get(refusal.read_model, set()).discard(refusal.document_id)
        return written

    async def _prepare(
        self, held: list[str], positions: dict[str, int], size: int
    ) -> _Prepared | None:
        """Read the events after the lowest of `positions` and build what each read
        model makes of those of its partitions in `held` (rows) past each one's
        checkpoint; None when there are none."""
        async with read_only(self.engine) as conn:
            batch = await outbox.read_after(conn, min(positions.values()), size, payload=False)
            if not batch:
                return None
            end = batch[-1].position
            # A full batch: how far behind is the worker? (the backlog rule, module docstring)
            remaining = (await outbox.head(conn))[0] - end if len(batch) == size else 0
            # Each partition takes its events past its own checkpoint: after a reset
            # of one of them (a replay) the others skip what they have applied.
            behind = [row for row in held if positions[row] < end]
            since: dict[str, dict[int, int]] = {}
            for row in behind:
                name, number = self._slots[row]
                since.setdefault(name, {})[number] = positions[row]
            taken: dict[str, list[StoredEvent]] = {}
            writes: list[Write] = []
            for name, by_partition in since.items():
                projection = self._projection_of[name]
                taken[name] = self._taken(batch, projection, by_partition)
                if taken[name]:
                    actions = await projection.project(conn, taken[name])
                    if actions:
                        writes.append(
                            Write(
                                projection.index.alias(self.index_prefix),
                                actions,
                                # And to the index a rebuild is building, if one is
                                # (readmodel/rebuild.py): looked up when written, after
                                # the events were read, which the rebuild relies on.
                                also=(projection.index.next_alias(self.index_prefix),),
                            )
                        )
        return _Prepared(dict(positions), size, batch, behind, taken, writes, remaining)

    def _taken(
        self, batch: list[StoredEvent], projection: Projection, since: dict[int, int]
    ) -> list[StoredEvent]:
        """The events of `batch` `projection` takes in the partitions of `since`
        (partition -> its checkpoint), past each one's checkpoint."""
        takes = projection.takes
        starts = set(since.values())
        if len(since) == self.partitions and len(starts) == 1:
            # Every partition, from one checkpoint (a worker alone, the usual case):
            # no hashing, as cheap as a read model in one piece.
            (start,) = starts
            return [e for e in batch if e.position > start and e.aggregate_type in takes]
        partitions = self.partitions
        end = batch[-1].position  # a partition not held takes nothing
        return [
            e
            for e in batch
            if e.aggregate_type in takes
            and e.position > since.get(partition_of(e.aggregate_id, partitions), end)
        ]

    async def _prefetched(self, positions: dict[str, int]) -> _Prepared | None:
        """The batch read ahead during the last cycle, if it was read from where the
        held projections now stand (a lost lease or a reset meanwhile voids it)."""
        task, self._prefetch = self._prefetch, None
        if task is None:
            return None
        try:
            prepared = await task
        except Exception:
            log.warning("reading ahead failed; reading again", exc_info=True)
            return None
        if prepared is None or prepared.positions != positions:
            return None
        return prepared

    async def _discard_prefetch(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _hold_leases(self) -> set[str]:
        """The partitions (rows) whose lease this worker holds, renewing them once
        half spent, and taking its share of the others (readmodel/partitions.py)."""
        now = self.clock()
        fresh = bool(self._held) and min(self._held.values()) - now > self.lease / 2
        if fresh and (
            len(self._held) == len(self._slots)
            or time.monotonic() - self._probed < self.takeover_interval
        ):
            return set(self._held)
        names = [p.name for p in self.projections]
        if not self._rows_ready:
            await self.checkpoints.seed(names, self.partitions, now)
            self._rows_ready = True
        self._probed = time.monotonic()
        before = set(self._held)
        try:
            held = await self.checkpoints.share(
                names,
                self.partitions,
                self.owner,
                now,
                self.lease,
                # Only a running loop holds locks: one driven from outside
                # (run_once, a rebuild's catch-up, tests) may never close them.
                locks=self._locks if self._running else None,
                renew=not fresh,
            )
        except Exception as error:
            if self._locks is None or not self._locks.broken:
                raise
            # The lock connection is gone, and every lock with it: whatever this
            # worker held may be another's by now. It connects again next cycle
            # and takes its share anew.
            # Once per loss, not once per cycle while it cannot connect again.
            (log.warning if self._held else log.debug)(
                "%s lost its lock connection (%s); its partitions count as lost",
                self.owner,
                error,
            )
            self._held.clear()
            await self._discard_prefetch()
            self._backlog = None
            return set()
        if held != before:
            log.info("%s holds %d of %d partitions", self.owner, len(held), len(self._slots))
        self._held = {name: now + self.lease for name in held}
        return held

    async def run_until_caught_up(self, timeout: float = 60.0) -> None:
        """Apply batches until every projection has reached the outbox head."""
        async with asyncio.timeout(timeout):
            while await self.run_once():
                pass

    async def catch_up(self, name: str, position: int) -> int:
        """Until every partition of read model `name` has reached `position`; where
        the furthest behind got (a rebuild's step (d), readmodel/rebuild.py). No
        deadline: the caller sets one.

        Drives this worker here unless a live loop holds a lease: another worker
        (a partition's lease is live and not ours), or this very worker running its
        loop in a task of its own; then it polls the checkpoints. Two drivers of one
        worker would only duplicate writes (harmless) and log a lost lease
        (misleading), hence the care.
        """
        wanted = set(slot_names(name, self.partitions))
        while True:
            rows = [c for c in await self.checkpoints.rows() if c.name in wanted]
            reached = min((c.position for c in rows), default=0) if len(rows) == len(wanted) else 0
            if reached >= position:
                return reached
            now = self.clock()
            live = any(
                c.owner is not None
                and c.owner != self.owner
                and c.lease_until is not None
                and c.lease_until > now
                for c in rows
            )
            if self._running or live:
                await asyncio.sleep(self.poll_interval)
                continue
            if not await self.run_once():
                await asyncio.sleep(self.poll_interval)


def _transactions(batch: list[StoredEvent]) -> dict[int, tuple[int, ...]]:
    """Position -> the positions of every event its transaction appended.

    A transaction appends its events at consecutive positions (the append is
    serialised, writemodel/outbox.py), with one correlation id and one time."""
    runs: dict[int, tuple[int, ...]] = {}
    run: list[StoredEvent] = []

    def close() -> None:
        positions = tuple(e.position for e in run)
        for position in positions:
            runs[position] = positions

    for event in batch:
        if run and (
            event.position != run[-1].position + 1
            or event.correlation_id != run[-1].correlation_id
            or event.occurred_at != run[-1].occurred_at
        ):
            close()
            run = []
        run.append(event)
    if run:
        close()
    return runs
