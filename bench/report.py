"""Figures, the table printed at the end, and `bench/results/latest.json`.

Every figure is a ratio system/baseline (or, for staleness and
subscriptions, system/reference) with a target; the absolute numbers stand
beside it and are never the result on their own.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from bench.stats import ratio

__all__ = [
    "Figure",
    "Report",
    "Target",
    "machine",
    "package_versions",
    "render_comparison",
    "render_table",
]

RESULTS = Path(__file__).resolve().parent / "results"

PACKAGES = (
    "strawberry-graphql",
    "graphql-core",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "elasticsearch",
    "elastic-transport",
    "aiohttp",
    "httpx",
    "websockets",
)


@dataclass(frozen=True)
class Target:
    op: Literal["<=", ">="]
    value: float

    def met(self, figure: float) -> bool | None:
        if math.isnan(figure):
            return None
        return figure <= self.value if self.op == "<=" else figure >= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Figure:
    """One row: a path's system figure against its baseline (or reference)."""

    path: str  # "1", "2", ... as numbered in docs/performance.md
    measure: str
    system: float
    baseline: float
    unit: str
    target: Target | None
    database: str = "-"
    # What each side is, in a few words: "GraphQL over HTTP", "raw AsyncElasticsearch.search".
    system_is: str = ""
    baseline_is: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return ratio(self.system, self.baseline)

    @property
    def meets(self) -> bool | None:
        return None if self.target is None else self.target.met(self.ratio)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "measure": self.measure,
            "database": self.database,
            "system": _round(self.system),
            "baseline": _round(self.baseline),
            "unit": self.unit,
            "ratio": _round(self.ratio),
            "target": None if self.target is None else str(self.target),
            "meets_target": self.meets,
            "system_is": self.system_is,
            "baseline_is": self.baseline_is,
            "details": _rounded(self.details),
        }


def _round(value: float) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(value, 4) if abs(value) < 10 else round(value, 1)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Report:
    size: str
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    # Peak resident memory (VmHWM, MiB) by process, read just before each one stopped.
    memory: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    # Set when the run stopped early: the figures before it stand.
    error: str | None = None
    # Wall-clock seconds of each step of the run, setup included.
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[step] = round(time.monotonic() - began, 1)
            print(f"  ({step}: {self.timings[step]:.0f}s)", flush=True)

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)
        for figure in figures:
            print(f"  -> {_line(figure)}", flush=True)

    def table(self) -> str:
        return render_table([f.as_dict() for f in self.figures], self.memory)

    def as_dict(self) -> dict[str, Any]:
        finished = datetime.now(UTC)
        return {
            "generated_at": finished.isoformat(timespec="seconds"),
            "duration_s": round((finished - self.started).total_seconds(), 1),
            "size": self.size,
            "settings": self.settings,
            "machine": {
                **machine(),
                "load_average_before": self.load_before,
                "load_average_after": os.getloadavg(),
            },
            "versions": self.versions,
            "figures": [f.as_dict() for f in self.figures],
            "memory_peak_mib": {k: round(v, 1) for k, v in self.memory.items()},
            "notes": self.notes,
            "step_seconds": self.timings,
            "error": self.error,
        }

    def write(self, path: Path | None = None) -> Path:
        path = path or RESULTS / "latest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def render_table(figures: list[dict[str, Any]], memory: dict[str, float]) -> str:
    """The Markdown table of figures (as `Figure.as_dict` gives them) and peak memory."""
    rows = [["#", "measure", "db", "system", "baseline", "ratio", "target", "ok"]]
    for f in figures:
        rows.append(
            [
                f["path"],
                f["measure"],
                f["database"],
                f"{_number(f['system'])} {f['unit']}",
                f"{_number(f['baseline'])} {f['unit']}",
                _number(f["ratio"]),
                f["target"] or "-",
                _ok(f),
            ]
        )
    lines = _markdown(rows)
    if memory:
        lines += ["", "| process | peak RSS (VmHWM) |", "| --- | --- |"]
        lines += [f"| {name} | {mib:,.0f} MiB |" for name, mib in memory.items()]
    return "\n".join(lines)


def _line(f: Figure) -> str:
    verdict = {True: "meets", False: "MISSES", None: "no target"}[f.meets]
    return (
        f"[{f.path}] {f.measure} ({f.database}): system {_number(f.system)} {f.unit}, "
        f"baseline {_number(f.baseline)} {f.unit}, ratio {_number(f.ratio)} "
        f"(target {f.target or '-'}: {verdict})"
    )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mib = round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "memory_mib": memory_mib,
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def package_versions() -> dict[str, str]:
    versions = {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        versions["bicameral_commit"] = commit + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


def render_comparison(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """A Markdown table of the ratios of two runs, figure by figure (path, measure, db)."""
    earlier = {(f["path"], f["measure"], f["database"]): f for f in before}
    rows = [["#", "measure", "db", "before", "after", "target", "ok after"]]
    for f in after:
        old = earlier.get((f["path"], f["measure"], f["database"]))
        rows.append(
            [
                f["path"],
                f["measure"],
                f["database"],
                "-" if old is None else _number(old["ratio"]),
                _number(f["ratio"]),
                f["target"] or "-",
                _ok(f),
            ]
        )
    return "\n".join(_markdown(rows))


def _ok(figure: dict[str, Any]) -> str:
    return {True: "yes", False: "**no**", None: "-"}[figure["meets_target"]]


def _markdown(rows: list[list[str]]) -> list[str]:
    """Table lines: the first row is the header, a rule follows it."""
    rows = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
    return ["| " + " | ".join(row) + " |" for row in rows]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report [FILE]`: the table of a results file (default
    bench/results/latest.json); `--compare BEFORE AFTER`: two runs' ratios side by side."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--compare"]:
        if len(args) != 3:
            print("usage: python -m bench.report --compare BEFORE.json AFTER.json", file=sys.stderr)
            return 2
        before, after = (json.loads(Path(a).read_text(encoding="utf-8")) for a in args[1:])
        print(render_comparison(before["figures"], after["figures"]))
        return 0
    path = Path(args[0]) if args else RESULTS / "latest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    print(render_table(data["figures"], data.get("memory_peak_mib", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
