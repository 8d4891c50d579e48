"""What every aggregate shares: an id, a version that grows by one per event,
and the events recorded since it was loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.errors import ConcurrencyConflict
from domain.events import Event
from domain.rules import VersionMustFit

__all__ = ["Aggregate"]


@dataclass(eq=False)
class Aggregate:
    id: str
    version: int = 0
    pending: list[tuple[int, Event]] = field(default_factory=list, repr=False, kw_only=True)

    def record(self, event: Event) -> None:
        VersionMustFit.check(self.version + 1)
        self.version += 1
        self.pending.append((self.version, event))

    def expect_version(self, expected: int | None) -> None:
        """Optimistic concurrency: a command that names a version acts only on that one."""
        if expected is not None and expected != self.version:
            raise ConcurrencyConflict(type(self).__name__, self.id, expected, self.version)
