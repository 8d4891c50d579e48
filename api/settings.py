"""Every setting Bicameral reads, each with its environment variable and default.

The one place configuration enters the program: the composition root
(`api.bootstrap`) reads a `Settings` and hands plain values down, so the
domain, write model and read model never look at the environment.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting's environment variable holds a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    # Folder for the SQLite file, the local Elasticsearch node's data and logs.
    data_dir: Path = PROJECT_ROOT / ".data"
    # Write database, an SQLAlchemy async URL (sqlite+aiosqlite:// or postgresql+asyncpg://).
    database_url: str = ""
    # Elasticsearch to read from and project into; the default is the local node.
    elasticsearch_url: str = "http://127.0.0.1:9200"
    # Prefix of every index and alias name, so several deployments can share a cluster.
    index_prefix: str = "bicameral"
    # Address `bicameral serve` binds to.
    host: str = "127.0.0.1"
    # Port `bicameral serve` listens on.
    port: int = 8000
    # API processes `bicameral serve` runs (uvicorn's workers); `--workers` overrides it.
    web_concurrency: int = 1
    # Largest request body, and WebSocket message, the API reads (bytes); larger gets 413.
    max_body_bytes: int = 1_048_576
    # Seconds requests in flight get to finish after SIGTERM before they are cancelled.
    shutdown_timeout: int = 5
    # Run the feed worker inside the API process (default: yes on SQLite, no elsewhere).
    embedded_worker: bool | None = None
    # Events the feed worker reads and projects per batch.
    feed_batch_size: int = 500
    # Seconds the worker sleeps between polls when nothing wakes it.
    feed_poll_interval: float = 1.0
    # Seconds the worker waits after a small batch, so the next gathers a few commits.
    feed_linger: float = 0.1
    # Seconds a worker's lease on a read model lasts unless renewed; another takes over after.
    feed_lease_seconds: float = 15.0
    # Longest a query waits for its consistencyToken before answering stale (seconds).
    consistency_timeout: float = 5.0
    # Longest one query or mutation may run (seconds); keep it above CONSISTENCY_TIMEOUT.
    request_timeout: float = 10.0
    # How long an idempotency key remembers its first result (hours).
    idempotency_ttl_hours: float = 24.0
    # Changes a subscriber may have waiting; one that falls further behind is closed.
    subscriber_queue_size: int = 1000
    # Query cost (api/limits.py) each client may spend per minute, per process; 0: no budget.
    budget_per_minute: int = 600_000
    # Staff and admins get this many times BUDGET_PER_MINUTE.
    budget_staff_multiplier: int = 10
    # Serve GraphiQL on GET /graphql.
    graphiql: bool = True
    # Answer introspection queries (turn off in production if the schema is private).
    introspection: bool = True
    # Hide error internals from clients; only a stable code and message are returned.
    mask_errors: bool = True
    # Port of the local Elasticsearch node that `bicameral search-node` manages.
    search_node_port: int = 9200
    # Log level of the service's loggers and uvicorn's (debug, info, warning, error).
    log_level: str = "info"

    def __post_init__(self) -> None:
        checks = [
            ("port", 1 <= self.port <= 65535, "a port from 1 to 65535"),
            ("search_node_port", 1 <= self.search_node_port <= 65535, "a port from 1 to 65535"),
            ("web_concurrency", self.web_concurrency >= 1, "at least 1"),
            ("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024"),
            ("shutdown_timeout", self.shutdown_timeout >= 0, "0 or more"),
            ("feed_batch_size", self.feed_batch_size >= 1, "at least 1"),
            ("subscriber_queue_size", self.subscriber_queue_size >= 1, "at least 1"),
            ("budget_per_minute", self.budget_per_minute >= 0, "0 (off) or more"),
            ("budget_staff_multiplier", self.budget_staff_multiplier >= 1, "at least 1"),
            ("feed_poll_interval", 0 < self.feed_poll_interval < math.inf, "above 0"),
            ("feed_linger", 0 <= self.feed_linger < math.inf, "0 or more"),
            ("feed_lease_seconds", 0 < self.feed_lease_seconds < math.inf, "above 0"),
            ("consistency_timeout", 0 <= self.consistency_timeout < math.inf, "0 or more"),
            ("request_timeout", 0 < self.request_timeout < math.inf, "above 0"),
            ("idempotency_ttl_hours", 0 < self.idempotency_ttl_hours < math.inf, "above 0"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise SettingsError(f"{name.upper()}={getattr(self, name)!r} must be {wanted}")

    @property
    def sqlite_default_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'bicameral.db'}"

    @property
    def write_database_url(self) -> str:
        return self.database_url or self.sqlite_default_url

    @property
    def is_sqlite(self) -> bool:
        return self.write_database_url.startswith("sqlite")

    @property
    def runs_embedded_worker(self) -> bool:
        if self.embedded_worker is None:
            return self.is_sqlite
        return self.embedded_worker

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read each setting from its environment variable (upper-case name)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update(overrides)
        return cls(**values)


def _parse(name: str, type_name: str, raw: str) -> Any:
    var = name.upper()
    try:
        if "bool" in type_name:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw).expanduser().resolve()
        return raw
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {type_name}") from None
