"""A last resort after SIGTERM: the process ends even if its event loop is stuck.

uvicorn handles SIGTERM by setting a flag that its main loop reads; requests in
flight then get `SHUTDOWN_TIMEOUT` seconds and are cancelled. Neither happens
while the loop is held by a CPU-bound request (a validation or a resolver that
does not yield), and the process would outlive its orchestrator's patience. So
the signal also arms a timer thread, which does not need the loop: if the
process still runs when it fires, it exits at once, saying why.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

__all__ = ["exit_after_signal"]

_armed = threading.Event()


def exit_after_signal(seconds: float) -> None:
    """Chain onto uvicorn's SIGTERM and SIGINT handlers (installed by the time the
    app's lifespan starts); anything else's handlers are left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not _is_uvicorns(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            _arm(seconds)
            previous(signum, frame)

        signal.signal(sig, handler)


def _is_uvicorns(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("uvicorn") and callable(handler)


def _arm(seconds: float) -> None:
    if _armed.is_set():
        return
    _armed.set()

    def fire() -> None:
        time.sleep(seconds)
        print(
            f"bicameral: still running {seconds:.0f} s after the signal to stop; exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    threading.Thread(target=fire, name="exit-after-signal", daemon=True).start()
