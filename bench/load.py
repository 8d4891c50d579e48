"""Load generators, bounded in count and in time.

`closed_loop`: N requests by C workers, each sending the next as soon as its
last answered (throughput). `paced`: requests sent on a fixed schedule, at
most C in flight (a write rate held for a while). Both stop at their count or
their deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["LoadResult", "closed_loop", "paced"]

# A request: its sequence number in; raises on failure.
Call = Callable[[int], Awaitable[None]]


@dataclass
class LoadResult:
    sent: int = 0
    completed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def record_error(self, error: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"{type(error).__name__}: {error}"[:300])


async def closed_loop(
    call: Call, *, total: int, concurrency: int, duration: float | None = None
) -> LoadResult:
    """Up to `total` calls through `concurrency` workers, none started after `duration`
    seconds; completed calls per second of wall time."""
    result = LoadResult()
    counter = iter(range(total))
    deadline = time.monotonic() + (duration if duration is not None else 3600.0)

    async def worker() -> None:
        for n in counter:
            if time.monotonic() > deadline:
                result.timed_out = duration is None
                return
            result.sent += 1
            began = time.perf_counter()
            try:
                await call(n)
            except Exception as error:
                result.record_error(error)
                continue
            result.latencies.append(time.perf_counter() - began)
            result.completed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


async def paced(
    call: Call, *, rate: float, duration: float, max_in_flight: int, grace: float = 30.0
) -> LoadResult:
    """`rate` calls per second for `duration` seconds, at most `max_in_flight` at once.

    A call whose turn comes while `max_in_flight` are pending waits for a slot,
    so a system that cannot keep up shows as a lower completed rate. After the
    schedule, pending calls get `grace` seconds to finish.
    """
    result = LoadResult()
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    count = max(1, int(rate * duration))
    started = time.perf_counter()
    last_done = started

    async def one(n: int) -> None:
        nonlocal last_done
        began = time.perf_counter()
        try:
            await call(n)
        except Exception as error:
            result.record_error(error)
        else:
            result.latencies.append(time.perf_counter() - began)
            result.completed += 1
            last_done = time.perf_counter()
        finally:
            slots.release()

    for n in range(count):
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() - started > duration + grace:
            result.timed_out = True
            break
        await slots.acquire()
        result.sent += 1
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        for task in pending:
            result.timed_out = True
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    # Over the schedule's span, or longer when the answers came late.
    result.elapsed = max(duration, last_done - started)
    return result
