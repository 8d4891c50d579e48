"""Every setting Bicameral reads, each with its environment variable and default.

The one place configuration enters the program: the composition root
(`api.bootstrap`) reads a `Settings` and hands plain values down, so the
domain, write model and read model never look at the environment.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from readmodel.indexes import IndexLayout

__all__ = ["Settings", "SettingsError", "usable_cores"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "production")
NODE_ROLES = ("all", "query", "command")
DEFAULT_ROLES = ("customer", "anonymous", "none")
# scheme://host[:port], as browsers send it in `Origin` (a bracketed IPv6 host too).
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# An Elasticsearch time value as index.refresh_interval takes it; -1: no periodic refresh.
_TIME_VALUE = re.compile(r"-1|[0-9]+(nanos|micros|ms|s|m|h|d)")


class SettingsError(ValueError):
    """A setting's environment variable holds a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    # Folder for the SQLite file, the local Elasticsearch node's data and logs.
    data_dir: Path = PROJECT_ROOT / ".data"
    # Write database, an SQLAlchemy async URL (sqlite+aiosqlite:// or postgresql+asyncpg://).
    database_url: str = ""
    # Elasticsearch to read from and project into; several nodes of one cluster: comma-separated.
    elasticsearch_url: str = "http://127.0.0.1:9200"
    # Primary shards of each read model's index; a change takes `bicameral readmodel rebuild`.
    elasticsearch_shards: int = 1
    # Replicas of each shard; applied to existing indexes when a worker starts.
    elasticsearch_replicas: int = 0
    # The indexes' own refresh interval (e.g. 30s, -1: none); empty: Elasticsearch's default.
    elasticsearch_refresh_interval: str = ""
    # Prefix of every index and alias name, so several deployments can share a cluster.
    index_prefix: str = "bicameral"
    # Address `bicameral serve` binds to.
    host: str = "127.0.0.1"
    # Port `bicameral serve` listens on.
    port: int = 8000
    # API processes `bicameral serve` runs (uvicorn's workers); `--workers` overrides it.
    # Unset: one per usable core on PostgreSQL, one on SQLite (see `serve_processes`).
    web_concurrency: int | None = None
    # Largest request body, and WebSocket message, the API reads (bytes); larger gets 413.
    max_body_bytes: int = 1_048_576
    # Seconds requests in flight get to finish after SIGTERM before they are cancelled.
    shutdown_timeout: int = 5
    # Run the feed worker inside the API process (default: yes on SQLite, no elsewhere).
    embedded_worker: bool | None = None
    # What `bicameral serve` serves: `all`, `query` (reads, without the write database)
    # or `command` (mutations, without Elasticsearch); `serve --role` overrides it.
    node_role: str = "all"
    # Events the feed worker reads and projects per batch.
    feed_batch_size: int = 500
    # Seconds the worker sleeps between polls when nothing wakes it.
    feed_poll_interval: float = 1.0
    # Seconds the worker waits after a small batch when commits came in during it, so
    # the next gathers a few; a worker that saw none waits for the next commit instead.
    feed_linger: float = 0.1
    # While catching up a backlog, the longest written batches wait for their refresh.
    feed_refresh_interval: float = 1.0
    # Seconds a worker's lease on a read model lasts unless renewed; another takes over after.
    feed_lease_seconds: float = 15.0
    # Partitions each read model is split into, each with its own checkpoint and
    # lease, so several workers share one read model (same value on every worker).
    feed_partitions: int = 4
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
    # `development` or `production`: production turns GraphiQL and introspection off,
    # needs a JWKS issuer and refuses unsafe settings (docs/security.md).
    bicameral_env: str = "development"
    # Serve GraphiQL on GET /graphql (default: on in development, off in production).
    graphiql: bool | None = None
    # Answer introspection queries (default: on in development, off in production).
    introspection: bool | None = None
    # Hide error internals from clients; only a stable code and message are returned.
    mask_errors: bool = True
    # Origins (comma-separated, e.g. https://shop.example) whose pages may call the API.
    cors_origins: str = ""
    # OIDC issuer's JWKS URL the API takes token keys from; empty: the local signing key.
    auth_jwks_url: str = ""
    # The `iss` every token must carry (required with AUTH_JWKS_URL).
    auth_issuer: str = ""
    # The `aud` every token must include (required with AUTH_JWKS_URL).
    auth_audience: str = ""
    # Seconds of clock difference allowed on `exp`, `nbf` and `iat`.
    auth_clock_skew: float = 30.0
    # Seconds the JWKS is kept before it is fetched again (an unknown `kid` fetches at once).
    auth_jwks_cache_seconds: float = 300.0
    # Claim holding the caller's role (a string, or a list where the highest known role wins).
    auth_role_claim: str = "role"
    # Role of a valid token whose role claim names no known role: customer, anonymous or none.
    auth_default_role: str = "customer"
    # Claim holding a customer's id; without it the id derives from `iss` and `sub`.
    auth_customer_claim: str = "customer_id"
    # Documents each API process remembers for automatic persisted queries (LRU); 0: APQ off.
    persisted_queries: int = 1000
    # Longest document (characters) a client may register as a persisted query; longer gets 413.
    persisted_query_max_chars: int = 20_000
    # Seconds shared caches may keep an anonymous answer to a persisted query over GET; 0: none.
    persisted_query_max_age: int = 5
    # Manifest (JSON) of the only documents to run; empty: any document (docs/graphql.md).
    trusted_documents: str = ""
    # The demo (`bicameral serve --demo` turns it on): demo data, and /demo/token hands the
    # demo customer's token to the storefront page (local signing key only; docs/frontend.md).
    demo: bool = False
    # Port of the local Elasticsearch node that `bicameral search-node` manages.
    search_node_port: int = 9200
    # Log level of the service's loggers and uvicorn's (debug, info, warning, error).
    log_level: str = "info"
    # OTLP/HTTP collector traces are sent to (e.g. http://127.0.0.1:4318); empty: no tracing.
    otel_exporter_otlp_endpoint: str = ""
    # Service name the traces carry.
    otel_service_name: str = "bicameral"
    # Port `bicameral worker` serves its metrics on (feed batches, bulk retries); 0: none.
    worker_metrics_port: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("port", 1 <= self.port <= 65535, "a port from 1 to 65535"),
            ("elasticsearch_shards", 1 <= self.elasticsearch_shards <= 1024, "from 1 to 1024"),
            ("elasticsearch_replicas", self.elasticsearch_replicas >= 0, "0 or more"),
            (
                "elasticsearch_refresh_interval",
                not self.elasticsearch_refresh_interval
                or _TIME_VALUE.fullmatch(self.elasticsearch_refresh_interval),
                "empty (Elasticsearch's default), -1 (none) or a time such as 1s, 500ms, 1m",
            ),
            ("search_node_port", 1 <= self.search_node_port <= 65535, "a port from 1 to 65535"),
            (
                "worker_metrics_port",
                0 <= self.worker_metrics_port <= 65535,
                "0 (none) or a port from 1 to 65535",
            ),
            (
                "web_concurrency",
                self.web_concurrency is None or self.web_concurrency >= 1,
                "at least 1",
            ),
            ("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024"),
            ("shutdown_timeout", self.shutdown_timeout >= 0, "0 or more"),
            ("feed_batch_size", self.feed_batch_size >= 1, "at least 1"),
            ("subscriber_queue_size", self.subscriber_queue_size >= 1, "at least 1"),
            ("persisted_queries", self.persisted_queries >= 0, "0 (off) or more"),
            ("persisted_query_max_chars", self.persisted_query_max_chars >= 1, "at least 1"),
            ("persisted_query_max_age", self.persisted_query_max_age >= 0, "0 or more"),
            (
                "trusted_documents",
                not self.trusted_documents or Path(self.trusted_documents).is_file(),
                "the path of a manifest file",
            ),
            ("budget_per_minute", self.budget_per_minute >= 0, "0 (off) or more"),
            ("budget_staff_multiplier", self.budget_staff_multiplier >= 1, "at least 1"),
            ("feed_poll_interval", 0 < self.feed_poll_interval < math.inf, "above 0"),
            ("feed_linger", 0 <= self.feed_linger < math.inf, "0 or more"),
            (
                "feed_refresh_interval",
                0 <= self.feed_refresh_interval < math.inf,
                "0 or more",
            ),
            ("feed_lease_seconds", 0 < self.feed_lease_seconds < math.inf, "above 0"),
            ("feed_partitions", 1 <= self.feed_partitions <= 256, "1 to 256"),
            ("consistency_timeout", 0 <= self.consistency_timeout < math.inf, "0 or more"),
            ("request_timeout", 0 < self.request_timeout < math.inf, "above 0"),
            ("idempotency_ttl_hours", 0 < self.idempotency_ttl_hours < math.inf, "above 0"),
            ("bicameral_env", self.bicameral_env in ENVIRONMENTS, " or ".join(ENVIRONMENTS)),
            ("node_role", self.node_role in NODE_ROLES, " or ".join(NODE_ROLES)),
            ("auth_clock_skew", 0 <= self.auth_clock_skew <= 300, "0 to 300 seconds"),
            ("auth_jwks_cache_seconds", 0 < self.auth_jwks_cache_seconds < math.inf, "above 0"),
            ("auth_role_claim", bool(self.auth_role_claim.strip()), "a claim name"),
            ("auth_customer_claim", bool(self.auth_customer_claim.strip()), "a claim name"),
            (
                "auth_default_role",
                self.auth_default_role in DEFAULT_ROLES,
                " or ".join(DEFAULT_ROLES),
            ),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise SettingsError(f"{name.upper()}={getattr(self, name)!r} must be {wanted}")
        _check_elasticsearch_url(self.elasticsearch_url)
        for origin in self.allowed_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"CORS_ORIGINS has {origin!r}: an origin is scheme://host[:port], "
                    "without a path or a trailing slash"
                )
        if self.auth_jwks_url:
            for name in ("auth_issuer", "auth_audience"):
                if not getattr(self, name):
                    raise SettingsError(f"{name.upper()} must be set with AUTH_JWKS_URL")
        production = self.bicameral_env == "production"
        # Unset GraphiQL and introspection follow the environment; set, they are kept.
        for name in ("graphiql", "introspection"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, not production)
        if production:
            problem = _unsafe_in_production(self)
            if problem:
                raise SettingsError(f"BICAMERAL_ENV=production refuses to start: {problem}")

    @property
    def is_production(self) -> bool:
        return self.bicameral_env == "production"

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """CORS_ORIGINS as a list; empty: no page on another origin may call the API."""
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())

    @property
    def elasticsearch_hosts(self) -> list[str]:
        """ELASTICSEARCH_URL as the list of nodes the client spreads its requests over."""
        return [url.strip() for url in self.elasticsearch_url.split(",") if url.strip()]

    @property
    def index_layout(self) -> IndexLayout:
        """Shards, replicas and refresh interval of every read model's index."""
        return IndexLayout(
            shards=self.elasticsearch_shards,
            replicas=self.elasticsearch_replicas,
            refresh_interval=self.elasticsearch_refresh_interval or None,
        )

    @property
    def uses_local_signing_key(self) -> bool:
        """Tokens are checked against the key `bicameral serve` keeps in DATA_DIR
        (development only) rather than an issuer's JWKS."""
        return not self.auth_jwks_url

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
    def serve_processes(self) -> int:
        """How many processes `bicameral serve` runs when `--workers` does not say.

        WEB_CONCURRENCY when set. Otherwise one per core this process may run on,
        on PostgreSQL; one on SQLite: it takes one writer at a time whatever the
        number of processes, and its processes have no LISTEN/NOTIFY, so a write
        taken by one reaches the others' feed worker, change hub and consistency
        waits only at their next poll (docs/operations.md, "Processes")."""
        if self.web_concurrency is not None:
            return self.web_concurrency
        return 1 if self.is_sqlite else usable_cores()

    @property
    def runs_embedded_worker(self) -> bool:
        if self.node_role == "query":
            return False  # a query node has no write database to read the outbox from
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


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or
    `taskset`'s limit), not the machine's count."""
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13
    if counted is not None:
        return int(counted() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _check_elasticsearch_url(value: str) -> None:
    """Each comma-separated node is http(s)://host[:port][/path]; else a SettingsError."""
    hosts = [url.strip() for url in value.split(",")]
    if not any(hosts):
        raise SettingsError("ELASTICSEARCH_URL is empty: give one node's URL, or several")
    for url in hosts:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError when out of range or not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"ELASTICSEARCH_URL has {url!r}: each node is http(s)://host[:port], "
                "several separated by commas"
            )


def _unsafe_in_production(settings: Settings) -> str | None:
    """The first setting production refuses, said with its variable; None if all are safe."""
    if not settings.auth_jwks_url:
        return (
            "AUTH_JWKS_URL is empty: production takes token keys from an issuer's JWKS, "
            "never the local signing key"
        )
    jwks = urlsplit(settings.auth_jwks_url)
    if jwks.scheme != "https" and not (
        jwks.scheme == "http" and jwks.hostname in {h.strip("[]") for h in _LOOPBACK_HOSTS}
    ):
        return f"AUTH_JWKS_URL={settings.auth_jwks_url!r} must be an https:// URL"
    if settings.demo:
        return "DEMO=true hands a customer's token to anyone who asks"
    if not settings.mask_errors:
        return "MASK_ERRORS=false would show error internals to clients"
    if "*" in settings.allowed_origins:
        return "CORS_ORIGINS='*' lets every site call the API; list the origins"
    return None


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
        if type_name in {"int", "int | None"}:
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw).expanduser().resolve()
        return raw
    except ValueError:
        kind = type_name.removesuffix(" | None")
        raise SettingsError(f"{var}={raw!r} is not a valid {kind}") from None
