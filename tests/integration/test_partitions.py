"""Read models split into partitions and shared by many workers (readmodel/partitions.py).

In-process workers (their own loops, on SQLite and PostgreSQL) show the fair
share, the seeding of partition rows, a lease-only takeover and a frozen worker
that cannot write over its successor; real `bicameral worker` processes on
PostgreSQL show the fast failover after SIGKILL and SIGSTOP/SIGCONT. Every test
ends with the read models equal to the write database, document for document.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.bootstrap import Bicameral
from readmodel.checkpoints import Checkpoint, Checkpoints
from readmodel.feed import FeedWorker
from readmodel.partitions import slot_names
from readmodel.projections import default_projections
from tests.integration.faults import (
    READ_MODELS,
    WorkerProcess,
    Workload,
    eventually,
    owner_pid,
    progress,
    read_model_mismatches,
    worker_env,
)

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

PARTITIONS = 4


def _worker(app: Bicameral, owner: str, **overrides: object) -> FeedWorker:
    options: dict[str, object] = {
        "index_prefix": app.settings.index_prefix,
        "batch_size": 50,
        "poll_interval": 0.05,
        "lease": timedelta(seconds=2),
        "owner": owner,
        "partitions": PARTITIONS,
        "takeover_interval": 0.1,
        **overrides,
    }
    return FeedWorker(app.engine, app.search, default_projections(), **options)  # type: ignore[arg-type]


async def _rows(app: Bicameral) -> list[Checkpoint]:
    return [r for r in await app.checkpoints.rows() if r.read_model in READ_MODELS]


def _owners(rows: list[Checkpoint], now: datetime) -> Counter[tuple[str, str]]:
    """(read model, owner) -> partitions held by a live lease."""
    return Counter(
        (r.read_model, r.owner)
        for r in rows
        if r.owner is not None and r.lease_until is not None and r.lease_until > now
    )


@contextlib.contextmanager
def _running(workers: list[FeedWorker]) -> Iterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(w.run(), name=f"worker-{w.owner}") for w in workers]
    try:
        yield tasks
    finally:
        for worker in workers:
            worker.stop()


async def _stopped(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=20)


async def _caught_up(app: Bicameral) -> bool | None:
    return True if not (await progress(app.engine)).behind else None


# --- partition rows ---


async def test_partition_rows_are_seeded_from_the_checkpoint_of_before_partitions(
    app: Bicameral,
) -> None:
    now = datetime.now(UTC)
    checkpoints = Checkpoints(app.engine)
    # A database from before partitions: one row named by the read model.
    await checkpoints.reset("products", 7, now)
    assert [r.name for r in await checkpoints.rows()] == ["products"]

    await checkpoints.seed(["products"], 4, now)

    rows = await checkpoints.rows()
    assert [(r.name, r.position) for r in rows] == [(n, 7) for n in slot_names("products", 4)]
    assert await checkpoints.reached(["products"]) == 7
    assert (await checkpoints.get("products")).position == 7


async def test_changing_the_partition_count_seeds_the_new_rows_from_the_lowest_old_one(
    app: Bicameral,
) -> None:
    now = datetime.now(UTC)
    checkpoints = Checkpoints(app.engine)
    await checkpoints.seed(["orders"], 2, now)
    await checkpoints.share(["orders"], 2, "w", now, timedelta(seconds=5))
    await checkpoints.advance(["orders:0/2"], "w", 9, now)
    await checkpoints.advance(["orders:1/2"], "w", 5, now)
    assert await checkpoints.reached(["orders"]) == 5

    await checkpoints.seed(["orders"], 3, now)

    rows = await checkpoints.rows()
    assert [(r.name, r.position) for r in rows] == [(n, 5) for n in slot_names("orders", 3)]
    assert await checkpoints.reached(["orders"]) == 5


async def test_a_worker_whose_rows_another_count_dropped_seeds_its_own_again(
    app: Bicameral,
) -> None:
    now = datetime.now(UTC)
    checkpoints = Checkpoints(app.engine)
    await checkpoints.seed(["products"], 4, now)
    assert len(await checkpoints.share(["products"], 4, "a", now, timedelta(seconds=5))) == 4
    # A worker run with FEED_PARTITIONS=2 starts: it replaces the rows.
    await checkpoints.seed(["products"], 2, now)

    assert await checkpoints.share(["products"], 4, "a", now, timedelta(seconds=5)) == set()

    rows = [r.name for r in await checkpoints.rows()]
    assert rows == slot_names("products", 4)
    assert len(await checkpoints.share(["products"], 4, "a", now, timedelta(seconds=5))) == 4


async def test_a_read_model_is_reached_only_when_its_furthest_behind_partition_is(
    app: Bicameral,
) -> None:
    now = datetime.now(UTC)
    checkpoints = Checkpoints(app.engine)
    await checkpoints.seed(["customers"], 4, now)
    held = await checkpoints.share(["customers"], 4, "w", now, timedelta(seconds=5))
    assert held == set(slot_names("customers", 4))
    await checkpoints.advance(slot_names("customers", 4)[:3], "w", 12, now)
    assert await checkpoints.reached(["customers"]) == 0
    lag = {figure.name: figure for figure in await app.lag()}["customers"]
    assert (lag.position, [p.position for p in lag.partitions]) == (0, [12, 12, 12, 0])


# --- workers sharing ---


async def test_four_workers_end_up_with_one_partition_each_and_every_document_right(
    app: Bicameral,
) -> None:
    workload = Workload(app.commands, seed=17)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=300, pause=0.01))
    workers = [_worker(app, f"w{n}") for n in range(4)]
    with _running(workers) as tasks:

        async def fair() -> Counter[tuple[str, str]] | None:
            owners = _owners(await _rows(app), datetime.now(UTC))
            shares = {
                (name, w.owner): owners[(name, w.owner)] for name in READ_MODELS for w in workers
            }
            return owners if set(shares.values()) == {1} else None

        # A newcomer gets its share within about half a lease (1 s here) of the others'
        # renewals; 30 s only catches a hang.
        await eventually(
            fair,
            timeout=30,
            what="each of 4 workers to hold 1 of 4 partitions",
            explain=lambda: "\n".join(f"{w.owner}: {sorted(w._held)}" for w in workers),
        )
        await writing  # every command written, shared or not yet
        await eventually(lambda: _caught_up(app), timeout=60, what="the workers to catch up")
    await _stopped(tasks)

    assert workload.attempted == 300
    assert await read_model_mismatches(app.engine, app.search, app.settings.index_prefix) == []


async def test_when_two_of_four_workers_die_the_others_take_their_partitions_on_lease_expiry(
    app: Bicameral,
) -> None:
    workload = Workload(app.commands, seed=18)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=400, pause=0.01))
    workers = [_worker(app, f"w{n}") for n in range(4)]
    with _running(workers) as tasks:

        async def everyone_holds() -> bool | None:
            owners = _owners(await _rows(app), datetime.now(UTC))
            return True if {o for _, o in owners} == {w.owner for w in workers} else None

        await eventually(everyone_holds, timeout=30, what="every worker to hold a partition")
        # Two die without a word: no lease released (in-process: leases only, the
        # lock connection of a cancelled loop is not what this test is about).
        for worker, task in zip(workers[:2], tasks[:2], strict=True):
            worker.release_leases = _nothing  # type: ignore[method-assign]
            task.cancel()
        survivors = {w.owner for w in workers[2:]}

        async def taken_over() -> bool | None:
            owners = _owners(await _rows(app), datetime.now(UTC))
            held = sum(n for (_, owner), n in owners.items() if owner in survivors)
            return True if held == PARTITIONS * len(READ_MODELS) else None

        await eventually(taken_over, timeout=30, what="the survivors to hold every partition")
        done.set()
        await writing
        await eventually(lambda: _caught_up(app), timeout=60, what="the survivors to catch up")
    await _stopped(tasks[2:])
    for worker, task in zip(workers[:2], tasks[:2], strict=True):
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del worker.release_leases  # its own again: it closes the lock connection it kept
        await worker.release_leases()

    assert await read_model_mismatches(app.engine, app.search, app.settings.index_prefix) == []


async def _nothing() -> None:
    return None


async def test_a_worker_frozen_past_its_lease_cannot_move_a_checkpoint_nor_roll_a_document_back(
    app: Bicameral,
) -> None:
    workload = Workload(app.commands, seed=19)
    for _ in range(30):
        await workload.step()
    start = datetime.now(UTC)
    frozen_clock, live_clock = [start], [start]
    frozen = _worker(app, "frozen", clock=lambda: frozen_clock[0])
    successor = _worker(app, "successor", clock=lambda: live_clock[0])
    assert await frozen.run_once() > 0  # it holds every partition
    # It is frozen: its clock stands still, while the successor sees its lease run out.
    live_clock[0] = start + timedelta(seconds=3)
    for _ in range(20):
        await workload.step()
    await successor.run_until_caught_up()
    taken = {r.name: r for r in await _rows(app)}
    assert {r.owner for r in taken.values()} == {"successor"}
    before = await read_model_mismatches(app.engine, app.search, app.settings.index_prefix)

    # Resumed, it believes its leases live and runs a cycle over what it had read.
    for _ in range(10):
        await workload.step()
    await frozen.run_once()

    after = {r.name: r for r in await _rows(app)}
    # Its advance is refused: no checkpoint moved and none changed hands.
    assert {n: (r.position, r.owner) for n, r in after.items()} == {
        n: (r.position, r.owner) for n, r in taken.items()
    }
    await successor.run_until_caught_up()
    assert before == []
    assert await read_model_mismatches(app.engine, app.search, app.settings.index_prefix) == []


# --- real worker processes on PostgreSQL ---


def _by_pid(rows: list[Checkpoint], now: datetime) -> Counter[int | None]:
    return Counter(
        owner_pid(r.owner)
        for r in rows
        if r.owner is not None and r.lease_until is not None and r.lease_until > now
    )


@POSTGRES_ONLY
async def test_killed_workers_partitions_move_to_the_others_at_once_and_nothing_is_lost(
    app: Bicameral, tmp_path: Path
) -> None:
    # A lease far longer than the takeover: only the advisory locks can move them.
    env = worker_env(
        app.settings, tmp_path, FEED_LEASE_SECONDS="30", FEED_PARTITIONS=str(PARTITIONS)
    )
    workload = Workload(app.commands, seed=21)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=800, pause=0.02))
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(4)]

    def tails() -> str:
        return "\n".join(w.tail() for w in workers)

    try:

        async def all_working() -> Counter[int | None] | None:
            if any(w.exited() for w in workers):
                raise AssertionError(f"a worker exited:\n{tails()}")
            held = _by_pid(await _rows(app), datetime.now(UTC))
            return held if set(held) == {w.pid for w in workers} else None

        await eventually(
            all_working, timeout=60, what="all 4 workers to hold partitions", explain=tails
        )
        doomed, survivors = workers[:2], workers[2:]
        for worker in doomed:
            worker.kill()
        killed = time.monotonic()

        async def moved() -> bool | None:
            held = _by_pid(await _rows(app), datetime.now(UTC))
            alive = {w.pid for w in survivors}
            total = PARTITIONS * len(READ_MODELS)
            return True if set(held) <= alive and sum(held.values()) == total else None

        # Within a lease of 30 s only the locks can do it; 10 s catches a hang, the
        # bench measures the figure.
        await eventually(
            moved, timeout=10, interval=0.02, what="the partitions to move", explain=tails
        )
        took = time.monotonic() - killed
        await asyncio.sleep(1.0)  # the survivors carry on under writes
        done.set()
        await writing
        await eventually(
            lambda: _caught_up(app), timeout=60, what="the survivors to catch up", explain=tails
        )
        for worker in survivors:
            worker.close()
        problems = await read_model_mismatches(app.engine, app.search, app.settings.index_prefix)
    finally:
        done.set()
        for worker in workers:
            worker.close()
        if not writing.done():
            writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing

    print(f"partitions moved {took:.2f} s after the kill; {workload.executed} commands written")
    assert took < 30  # before the lease ran out: the lock, not the lease, moved them
    assert problems == []


@POSTGRES_ONLY
async def test_a_stopped_and_resumed_worker_process_cannot_roll_anything_back(
    app: Bicameral, tmp_path: Path
) -> None:
    env = worker_env(
        app.settings, tmp_path, FEED_LEASE_SECONDS="2", FEED_PARTITIONS=str(PARTITIONS)
    )
    workload = Workload(app.commands, seed=22)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=600, pause=0.02))
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    frozen, other = workers
    seen: dict[str, int] = {}
    backwards: list[str] = []

    def tails() -> str:
        return "\n".join(w.tail() for w in workers)

    async def watch() -> None:
        while True:
            for row in await _rows(app):
                if row.position < seen.get(row.name, 0):
                    backwards.append(f"{row.name}: {seen[row.name]} -> {row.position}")
                seen[row.name] = max(seen.get(row.name, 0), row.position)
            await asyncio.sleep(0.02)

    watching = asyncio.create_task(watch())
    try:

        async def both_hold() -> bool | None:
            held = _by_pid(await _rows(app), datetime.now(UTC))
            return True if set(held) == {frozen.pid, other.pid} else None

        await eventually(
            both_hold, timeout=60, what="both workers to hold partitions", explain=tails
        )
        frozen.process.send_signal(signal.SIGSTOP)

        async def other_holds_all() -> bool | None:
            held = _by_pid(await _rows(app), datetime.now(UTC))
            return True if set(held) == {other.pid} else None

        # The frozen process keeps its connection and its locks: its lease must run out.
        await eventually(other_holds_all, timeout=30, what="the other to take over", explain=tails)
        await asyncio.sleep(1.0)
        frozen.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(3.0)  # it resumes mid-cycle, finds its leases gone, shares again
        done.set()
        await writing
        await eventually(
            lambda: _caught_up(app), timeout=60, what="the workers to catch up", explain=tails
        )
        for worker in workers:
            worker.close()
        problems = await read_model_mismatches(app.engine, app.search, app.settings.index_prefix)
    finally:
        done.set()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGCONT)
            worker.close()
        if not writing.done():
            writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing

    assert backwards == []
    assert problems == []


async def test_readmodel_status_lists_every_partition_with_its_position_and_owner(
    app: Bicameral, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import _readmodel_status
    from domain import commands as c
    from writemodel.access import SYSTEM

    await app.commands.execute(
        c.CreateProduct(sku="STATUS-1", name="Status", price=100, currency="EUR"), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    head = (await progress(app.engine)).head

    assert await _readmodel_status(app.settings) == 0

    lines = capsys.readouterr().out.splitlines()
    for name in READ_MODELS:
        # The read model's own line keeps its columns: its position and owner.
        assert any(line.split()[:2] == [name, str(head)] for line in lines)
        for row in slot_names(name, 4):
            (line,) = [line for line in lines if line.startswith(row + " ")]
            assert line.split()[1:4] == [str(head), "0", app.worker.owner]


@POSTGRES_ONLY
async def test_a_worker_whose_lock_connection_dies_loses_its_partitions_to_the_others(
    app: Bicameral,
) -> None:
    from sqlalchemy import text

    from readmodel.partitions import WORKER_LOCKS, presence_key
    from writemodel.database import create_engine

    workload = Workload(app.commands, seed=23)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=200, pause=0.02))
    # A lease of 20 s, renewed every 10 s: a partition that moves within 10 s of the
    # cut moved by its lock, not by its lease.
    cut, other = (_worker(app, name, lease=timedelta(seconds=20)) for name in ("cut", "other"))
    with _running([cut, other]) as tasks:

        async def shared() -> set[str] | None:
            rows = await _rows(app)
            held = {r.name for r in rows if r.owner == "cut"}
            return held if held and any(r.owner == "other" for r in rows) else None

        had = await eventually(shared, timeout=30, what="both workers to hold partitions")
        # The cut worker cannot open a lock connection again (nothing listens there),
        # while its other connections still work: it must hold nothing meanwhile.
        assert cut._locks is not None
        cut._locks.engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
        async with app.engine.begin() as conn:
            # The server ends the session of the cut worker's lock connection.
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid::bigint = :a AND objid::bigint = :b"
                ),
                {"a": WORKER_LOCKS, "b": presence_key("cut")},
            )

        async def moved() -> bool | None:
            owners = {r.name: r.owner for r in await _rows(app)}
            return True if any(owners[name] == "other" for name in had) else None

        await eventually(moved, timeout=10, what="a partition of the cut worker to move")

        async def cut_holds_nothing() -> bool | None:
            return True if not cut._held else None

        # It counts every partition as lost, and takes none without its locks.
        await eventually(cut_holds_nothing, timeout=10, what="the cut worker to let go")
        done.set()
        await writing
        await eventually(lambda: _caught_up(app), timeout=60, what="the workers to catch up")
    await _stopped(tasks)

    assert await read_model_mismatches(app.engine, app.search, app.settings.index_prefix) == []
