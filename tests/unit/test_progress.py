"""The rebuild's progress: a bar on a terminal with log lines above it, plain
periodic lines anywhere else."""

from __future__ import annotations

import io
import logging

from api.progress import RebuildProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_progress_is_a_plain_line_every_interval_and_one_when_done() -> None:
    out, clock = io.StringIO(), Clock()
    with RebuildProgress("products", out=out, interval=5.0, clock=clock) as show:
        show(0, 1000)
        for loaded in range(100, 1000, 100):
            clock.now += 1.0
            show(loaded, 1000)
        clock.now += 1.0
        show(1000, 1000)
        show(1000, 1000)

    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "products: 0/1000 documents (0%), 0/s",
        "products: 500/1000 documents (50%), 100/s",
        "products: 1000/1000 documents (100%), 100/s",
    ]


def test_on_a_terminal_progress_is_a_bar_and_log_lines_go_above_it_not_into_it() -> None:
    terminal = io.StringIO()
    # The service's log handler writes to the same terminal as the bar.
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with RebuildProgress("products", out=terminal, terminal=True, clock=Clock()) as show:
            show(0, 5)
            logging.getLogger("bicameral").warning("a log line while the bar shows")
            show(5, 5)
        restored = handler.stream
    finally:
        root.removeHandler(handler)

    text = terminal.getvalue()
    assert "\x1b[" in text  # drawn by rich, for a terminal
    assert "5/5" in text
    line = next(ln for ln in text.splitlines() if "a log line while the bar shows" in ln)
    # The log line has its row to itself: no part of the bar shares it.
    assert "products" not in line and "━" not in line
    assert restored is terminal
