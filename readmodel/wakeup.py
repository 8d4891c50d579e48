"""Wake-ups across processes through PostgreSQL's LISTEN/NOTIFY.

`writemodel.outbox.append` sends a NOTIFY on the outbox channel inside the
command's transaction (delivered at commit, never for a rollback): it wakes
the feed worker. The worker sends one on the applied channel after each batch
is searchable: it wakes the API processes' change hubs. Either is a shortcut,
not the data path: the worker and the hubs still poll, so a NOTIFY lost while
the listening connection was down costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from readmodel.tasks import cancel

__all__ = ["PostgresWakeup"]

log = logging.getLogger(__name__)


class PostgresWakeup:
    """One connection that LISTENs on each channel and calls its wake-up."""

    def __init__(
        self,
        url: URL,
        channels: dict[str, Callable[[], None]],
        *,
        retry_interval: float = 2.0,
    ) -> None:
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.channels = channels
        self.retry_interval = retry_interval
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="postgres-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    def _notified(self, _connection: Any, _pid: int, channel: str, _payload: str) -> None:
        self.channels[channel]()

    async def _run(self) -> None:
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                for channel in self.channels:
                    await connection.add_listener(channel, self._notified)
                self.listening.set()
                # Whatever happened while we were not listening: look now.
                for wake in self.channels.values():
                    wake()
                await lost.wait()
                log.warning("outbox listener lost its connection; polling covers meanwhile")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox listener cannot connect (%s); retrying", error)
            finally:
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close()
            await asyncio.sleep(self.retry_interval)
