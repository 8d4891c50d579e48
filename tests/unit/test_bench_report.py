"""The benchmark report's comparison of two runs: figures paired by what they measure."""

from __future__ import annotations

from typing import Any

from bench.report import render_comparison


def _figure(path: str, database: str, ratio: float, meets: bool | None) -> dict[str, Any]:
    return {
        "path": path,
        "measure": f"measure {path}",
        "database": database,
        "ratio": ratio,
        "target": ">= 0.7",
        "meets_target": meets,
    }


def test_two_runs_are_compared_figure_by_figure_and_a_new_figure_has_no_before() -> None:
    before = [_figure("4", "postgres", 0.25, False), _figure("4", "sqlite", 0.22, False)]
    after = [_figure("4", "sqlite", 0.71, True), _figure("5", "postgres", 0.76, False)]

    lines = render_comparison(before, after).splitlines()

    assert lines[0] == "| # | measure | db | before | after | target | ok after |"
    assert lines[2:] == [
        "| 4 | measure 4 | sqlite | 0.22 | 0.71 | >= 0.7 | yes |",
        "| 5 | measure 5 | postgres | - | 0.76 | >= 0.7 | **no** |",
    ]
