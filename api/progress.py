"""The rebuild's progress: a rich progress bar on a terminal, plain lines otherwise.

On a terminal the bar stays at the bottom and log lines (the service logs
to stderr) are printed above it, never into it. Piped to a file or a CI log,
a line every `interval` seconds says how far it has come, and one more when
it is done: no carriage returns to garble the log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO, cast

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

__all__ = ["RebuildProgress"]


class RebuildProgress:
    """Shows `loaded/total` documents of one read model; use as a context manager
    and pass it as the rebuild's `progress` callback."""

    def __init__(
        self,
        name: str,
        *,
        out: TextIO | None = None,
        terminal: bool | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.out = out if out is not None else sys.stdout
        self.terminal = self.out.isatty() if terminal is None else terminal
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._last_line: float | None = None
        self._done = False
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._handlers: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    def __enter__(self) -> RebuildProgress:
        self.started = self.clock()
        if self.terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(file=self.out, force_terminal=True),
            )
            self._task = self._bar.add_task(self.name, total=None, rate="")
            self._bar.start()
            self._log_above_the_bar()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, loaded: int, total: int) -> None:
        rate = loaded / max(self.clock() - self.started, 1e-6)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=loaded, total=total, rate=f"{rate:,.0f}/s")
            return
        now = self.clock()
        finished = loaded >= total
        due = self._last_line is None or now - self._last_line >= self.interval
        if (finished and not self._done) or (due and not finished):
            self._last_line = now
            self._done = finished
            share = 100 * loaded / total if total else 100.0
            print(
                f"{self.name}: {loaded}/{total} documents ({share:.0f}%), {rate:,.0f}/s",
                file=self.out,
                flush=True,
            )

    def _log_above_the_bar(self) -> None:
        """Log handlers writing to the terminal write through rich while the bar
        shows, so each log line is printed above it instead of into it."""
        assert self._bar is not None
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.__stderr__,
                sys.__stdout__,
                sys.stderr,
                self.out,
            ):
                old = handler.stream
                handler.setStream(cast(TextIO, FileProxy(self._bar.console, old)))
                self._handlers.append((handler, old))
