"""Path 8: the highest write rate at which the feed's lag stays bounded.

createProduct over HTTP (two events each) at a paced rate, at most 16 in
flight, for a window, with the feed worker running (its own process on
PostgreSQL, embedded in the API process on SQLite). The lag (outbox head minus
the lowest checkpoint) is read from the write database twice a second.

A rate holds when, over its window, every write succeeded and:
- the lag stayed bounded: its 95th percentile over the second half of the
  window is at most a worker batch (500 events) or 2 s of incoming events,
  whichever is larger (a worker that falls behind by d events/s crosses that
  within the window once d exceeds roughly 2 s x rate / window), and
- the worker drained the lag within 10 s of the load stopping.

The rate that counts is the one achieved, not the one asked for: with the
worker sharing the machine, the write side may not keep the pace asked, and
what it does commit with the lag bounded is the sustainable rate.

Rates are asked as fractions of path 3's createProduct throughput on the same
database, upwards until one fails, then one step between the last that held
and the first that failed (or downwards if the first fails); at most
`max_steps` windows. The figure: the highest achieved rate that held / path
3's rate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.data import lag
from bench.graphql import http_client
from bench.load import paced
from bench.mutations import CONCURRENCY, http_create_product
from bench.report import Figure, Target
from bench.services import cpu_seconds
from bench.stats import percentile

__all__ = ["Step", "measure", "wait_caught_up"]

BATCH = 500  # FEED_BATCH_SIZE's default
LAG_SECONDS = 2.0
DRAIN_TIMEOUT = 10.0
EVENTS_PER_COMMAND = 2
FRACTIONS = (0.6, 0.8, 1.0, 1.2)


async def wait_caught_up(engine: AsyncEngine, timeout: float) -> float | None:
    """Seconds until the lowest checkpoint reached the head; None on timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        head, low = await lag(engine)
        if low >= head:
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    return None


@dataclass
class Step:
    target: float  # commands/s asked for
    achieved: float  # commands/s committed
    failed: int
    lag_p95_second_half: float  # events
    lag_max: float  # events
    lag_bound: float  # events
    drained_in: float | None  # seconds after the load stopped
    # Share of one core each process used over the window, by process.
    cpu: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def kept_pace(self) -> bool:
        return self.failed == 0 and self.achieved >= 0.95 * self.target

    @property
    def held(self) -> bool:
        return (
            self.failed == 0
            and self.lag_p95_second_half <= self.lag_bound
            and self.drained_in is not None
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_per_s": self.target,
            "achieved_per_s": self.achieved,
            "failed": self.failed,
            "lag_p95_second_half_events": self.lag_p95_second_half,
            "lag_max_events": self.lag_max,
            "lag_bound_events": self.lag_bound,
            "drained_in_s": self.drained_in,
            "kept_pace": self.kept_pace,
            "cpu_cores_used": self.cpu,
            "held": self.held,
        }


async def _step(
    api_url: str,
    bearer: str,
    engine: AsyncEngine,
    rate: float,
    window: float,
    label: str,
    processes: dict[str, int],
) -> Step:
    caught_up = await wait_caught_up(engine, 120)
    if caught_up is None:
        raise RuntimeError("the feed did not catch up before the step (120 s)")
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def sample() -> None:
        began = time.monotonic()
        while not stop.is_set():
            head, low = await lag(engine)
            samples.append((time.monotonic() - began, head - low))
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    async with http_client(CONCURRENCY, bearer) as client:

        async def create(n: int) -> None:
            await http_create_product(client, api_url, f"{label}-{n:07d}", n)

        sampler = asyncio.create_task(sample())
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        began = time.monotonic()
        try:
            result = await paced(create, rate=rate, duration=window, max_in_flight=CONCURRENCY)
        finally:
            stop.set()
            await sampler
        spent = time.monotonic() - began
        cpu = {name: (cpu_seconds(pid) - before[name]) / spent for name, pid in processes.items()}
    drained = await wait_caught_up(engine, DRAIN_TIMEOUT)
    half = [value for t, value in samples if t >= window / 2] or [0]
    return Step(
        target=rate,
        achieved=result.rate,
        failed=result.failed,
        lag_p95_second_half=percentile(half, 95),
        lag_max=max((value for _, value in samples), default=0),
        lag_bound=max(BATCH, LAG_SECONDS * EVENTS_PER_COMMAND * result.rate),
        drained_in=drained,
        cpu=cpu,
        samples=samples,
    )


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


async def measure(
    database: str,
    api_url: str,
    engine: AsyncEngine,
    throughput: float,
    *,
    bearer: str,
    window: float,
    max_steps: int,
    processes: dict[str, int],
) -> tuple[list[Figure], float]:
    """The figure, and the highest rate that held (staleness runs at half of it)."""
    print(
        f"[8] sustained load ({database}): windows of {window:.0f}s, rates as fractions of "
        f"{throughput:,.0f} commits/s",
        flush=True,
    )
    steps: list[Step] = []
    fraction_held: float | None = None
    fraction_failed: float | None = None
    planned = list(FRACTIONS)
    while len(steps) < max_steps and planned:
        fraction = planned.pop(0)
        step = await _step(
            api_url, bearer, engine, fraction * throughput, window, f"L{len(steps)}", processes
        )
        steps.append(step)
        print(
            f"    {fraction:.2f} x: {step.achieved:,.1f}/s of {step.target:,.1f}/s, lag p95 "
            f"{step.lag_p95_second_half:,.0f} (bound {step.lag_bound:,.0f}) events, "
            f"drained in {_seconds(step.drained_in)}: {'held' if step.held else 'did not hold'}",
            flush=True,
        )
        if step.held:
            fraction_held = max(fraction_held or 0.0, fraction)
            continue
        fraction_failed = fraction if fraction_failed is None else min(fraction_failed, fraction)
        if fraction_held is None:
            planned = [fraction * 0.6] if fraction > 0.1 else []
        else:
            planned = [(fraction_held + fraction_failed) / 2]
            max_steps = min(max_steps, len(steps) + 1)
    best = max((s.achieved for s in steps if s.held), default=0.0)
    figure = Figure(
        path="8",
        measure=f"sustained write rate with bounded lag ({window:.0f}s windows) / path 3",
        database=database,
        system=best,
        baseline=throughput,
        unit="commits/s",
        target=Target(">=", 0.8),
        system_is="createProduct over HTTP with the feed worker running",
        baseline_is="path 3: createProduct over HTTP, no worker running",
        details={"window_s": window, "steps": [s.as_dict() for s in steps]},
    )
    fallback = min((s.achieved for s in steps), default=throughput * 0.25)
    return [figure], best or fallback * 0.5
