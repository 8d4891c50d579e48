"""`python -m bench [--size smoke|default|full] [--only 1,3] [--databases postgres,sqlite]`"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from bench.runner import PATHS, run
from bench.sizes import SIZES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure each path of Bicameral against a baseline without it.",
    )
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="default",
        help="smoke: a minute or two; default: under 10 minutes on 2 cores; "
        "full: the issue's 100,000 products and 2-minute windows",
    )
    parser.add_argument(
        "--only",
        default=",".join(PATHS),
        help="comma-separated paths to measure (1-8, 3w, f); what they need runs too",
    )
    parser.add_argument(
        "--databases",
        default="postgres,sqlite",
        help="comma-separated write databases: postgres, sqlite",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (default: bench/results/latest.json)",
    )
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if not only <= set(PATHS):
        parser.error(f"--only takes paths among {', '.join(PATHS)}")
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    if not databases or not set(databases) <= {"postgres", "sqlite"}:
        parser.error("--databases takes postgres, sqlite or both")
    # A plain `kill` stops the run as Ctrl-C does: through the cleanup that stops
    # the child processes and PostgreSQL and deletes the run's indexes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = asyncio.run(run(SIZES[args.size], only, databases))
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the run's PostgreSQL and child processes were stopped and its "
            "indexes deleted; no results written",
            file=sys.stderr,
        )
        return 130
    path = report.write(args.output)
    print("\n" + report.table())
    print(f"\nwrote {path}")
    if report.error:
        print(f"the run stopped early: {report.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
