"""What every resolver can reach: the services, the request, and notes for the response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from api.identity import ANONYMOUS, Identity

if TYPE_CHECKING:
    from api.bootstrap import Bicameral

__all__ = ["Context"]


@dataclass
class Context:
    app: Bicameral
    request: Request | Any
    response: Any = None
    # Who is calling (api/identity.py): anonymous unless a verified token says otherwise.
    identity: Identity = ANONYMOUS
    # Reads that asked for a consistency token and answered before reaching it.
    stale: list[dict[str, Any]] = field(default_factory=list)
    # Reads whose consistency token produced documents Elasticsearch refused
    # (quarantined, readmodel/quarantine.py): reached at once, those documents missing.
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    @property
    def correlation_id(self) -> str | None:
        headers = getattr(self.request, "headers", None) or {}
        value = headers.get("x-correlation-id")
        return value[:64] if value else None
