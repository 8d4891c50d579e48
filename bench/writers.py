"""Path 3w: commits/s against the number of concurrent writers, on a durable PostgreSQL.

The question it answers: do concurrent commands commit in parallel (group
commit sharing one WAL flush between many), or does something in Bicameral's
write path make them take turns? Two sides, the same transaction shape:

- Bicameral: `createProduct` through the command service, in process (the
  unit of work, the repositories, the outbox append with its announcement);
- raw: the same rows (product, stock, two events) written by plain SQLAlchemy
  Core in one transaction (`bench.mutations.raw_create_product`).

Both run at 1, 4, 16 and 64 concurrent writers, each with a pool of 64
connections, against their own database of one PostgreSQL started here with
`fsync`, `synchronous_commit` and `full_page_writes` ON (the server's
defaults; the suite's throwaway server turns them off, which would hide the
very flush that group commit shares). No feed worker runs.

Run alone: `python -m bench.writers [--seconds 5] [--png docs/writers.png]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.report import Figure, Target

__all__ = ["WRITERS", "Curve", "draw", "measure"]

WRITERS = (1, 4, 16, 64)
POOL = 64
TARGET = Target(">=", 0.8)  # at 16 and 64 writers (issue 16)
_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


@dataclass
class Curve:
    writers: list[int]
    system: list[float]
    baseline: list[float]
    settings: dict[str, str]

    def ratios(self) -> list[float]:
        return [s / b if b else 0.0 for s, b in zip(self.system, self.baseline, strict=True)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "writers": self.writers,
            "bicameral_commits_per_s": [round(v, 1) for v in self.system],
            "raw_commits_per_s": [round(v, 1) for v in self.baseline],
            "ratio": [round(v, 3) for v in self.ratios()],
            "server": self.settings,
        }


async def _make_durable(url: str) -> dict[str, str]:
    """Turn the throwaway server's shortcuts off (ALTER SYSTEM outranks postgresql.conf)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for name, value in _DURABLE.items():
                await conn.execute(text(f"ALTER SYSTEM SET {name} = {value}"))
            await conn.execute(text("SELECT pg_reload_conf()"))
            await asyncio.sleep(0.5)  # the postmaster signals its children
        async with engine.connect() as conn:
            shown = {n: str(await conn.scalar(text(f"SHOW {n}"))) for n in _DURABLE}
    finally:
        await engine.dispose()
    if shown != _DURABLE:
        raise RuntimeError(f"the bench server is not durable: {shown}")
    return shown


async def _rate(call: Callable[[int], Awaitable[None]], writers: int, seconds: float) -> float:
    """Commits per second of `writers` closed loops over `seconds` (after a short warm-up)."""
    counter = iter(range(10**9))
    done = 0
    deadline = 0.0

    async def loop() -> None:
        nonlocal done
        for n in counter:
            if time.monotonic() > deadline:
                return
            await call(n)
            done += 1

    deadline = time.monotonic() + min(1.0, seconds / 4)
    await asyncio.gather(*(loop() for _ in range(writers)))
    done = 0
    began = time.monotonic()
    deadline = began + seconds
    await asyncio.gather(*(loop() for _ in range(writers)))
    return done / (time.monotonic() - began)


def _numbered(
    call: Callable[[int, int], Awaitable[None]], run: int
) -> Callable[[int], Awaitable[None]]:
    """`call` with its run number bound (skus stay unique across runs)."""

    async def bound(n: int) -> None:
        await call(n, run)

    return bound


async def measure(*, seconds: float = 5.0, rounds: int = 1) -> tuple[Curve, list[Figure]]:
    from bench.mutations import create_product_command, raw_create_product
    from tools.pg_server import PostgresServer
    from writemodel.access import SYSTEM
    from writemodel.database import create_engine
    from writemodel.migrate import migrate
    from writemodel.service import CommandService
    from writemodel.sql_unit_of_work import SqlUnitOfWork

    print(f"[3w] writers {WRITERS}, {seconds:.0f}s each, durable PostgreSQL", flush=True)
    with PostgresServer() as server:
        settings = await _make_durable(server.sqlalchemy_url())
        urls = {}
        for side in ("bicameral", "raw"):
            server.create_database(f"writers_{side}")
            urls[side] = server.sqlalchemy_url(f"writers_{side}")
        engines: dict[str, AsyncEngine] = {
            "bicameral": create_engine(urls["bicameral"], pool_size=POOL),
            "raw": create_async_engine(urls["raw"], pool_size=POOL, max_overflow=0),
        }
        try:
            for engine in engines.values():
                await migrate(engine)
            service = CommandService(lambda: SqlUnitOfWork(engines["bicameral"]))

            async def bicameral(n: int, r: int) -> None:
                await service.execute(create_product_command(f"S{r}-{n:09d}", n), actor=SYSTEM)

            async def raw(n: int, r: int) -> None:
                await raw_create_product(engines["raw"], f"B{r}-{n:09d}", n)

            system: list[float] = []
            baseline: list[float] = []
            run = 0
            for writers in WRITERS:
                best = {"bicameral": 0.0, "raw": 0.0}
                for _ in range(rounds):
                    for side, call in (("raw", raw), ("bicameral", bicameral)):
                        run += 1
                        r = run
                        rate = await _rate(_numbered(call, r), writers, seconds)
                        best[side] = max(best[side], rate)
                system.append(best["bicameral"])
                baseline.append(best["raw"])
                print(
                    f"[3w] {writers:>2} writers: bicameral {best['bicameral']:7.1f}/s, "
                    f"raw {best['raw']:7.1f}/s, ratio {best['bicameral'] / best['raw']:.2f}",
                    flush=True,
                )
        finally:
            for engine in engines.values():
                await engine.dispose()
    curve = Curve(list(WRITERS), system, baseline, settings)
    figures = [
        Figure(
            path="3w",
            measure=f"createProduct commits/s, {w} concurrent writer{'s' if w > 1 else ''}",
            system=s,
            baseline=b,
            unit="commits/s",
            target=TARGET if w >= 16 else None,
            database="postgres",
            system_is="command service in process, durable PostgreSQL",
            baseline_is="raw SQLAlchemy Core, same rows, same server",
            details={"writers": w, "server": settings},
        )
        for w, s, b in zip(curve.writers, curve.system, curve.baseline, strict=True)
    ]
    return curve, figures


def draw(curves: dict[str, Curve], path: Path) -> None:
    """Commits/s against writers, one line per side and per labelled run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = iter(["-o", "--s", ":^", "-.v"])
    for label, curve in curves.items():
        style = next(styles)
        ax.plot(
            curve.writers, curve.baseline, style, color="grey", label=f"raw SQLAlchemy ({label})"
        )
        ax.plot(curve.writers, curve.system, style, color="tab:blue", label=f"Bicameral ({label})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(WRITERS), [str(w) for w in WRITERS])
    ax.set_xlabel("concurrent writers")
    ax.set_ylabel("createProduct commits/s")
    ax.set_title("Writes on PostgreSQL, fsync and synchronous_commit on")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the curve here")
    parser.add_argument("--label", default="this branch")
    parser.add_argument("--png", type=Path, help="draw the curve(s) here")
    parser.add_argument(
        "--compare", type=Path, action="append", default=[], help="label=curve.json to draw too"
    )
    args = parser.parse_args()
    curve, _ = asyncio.run(measure(seconds=args.seconds, rounds=args.rounds))
    if args.json:
        args.json.write_text(json.dumps(curve.as_dict(), indent=2) + "\n")
    if args.png:
        curves: dict[str, Curve] = {}
        for spec in args.compare:
            label, _, file = str(spec).partition("=")
            data = json.loads(Path(file).read_text())
            curves[label] = Curve(
                data["writers"], data["bicameral_commits_per_s"], data["raw_commits_per_s"], {}
            )
        curves[args.label] = curve
        draw(curves, args.png)


if __name__ == "__main__":
    main()
