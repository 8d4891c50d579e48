"""Fixtures shared by every layer of the suite.

Services come first: a real PostgreSQL and a real Elasticsearch, either given
by URL or started by the suite. A test that needs one and cannot have it fails;
nothing here skips.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings
from tools import pg_server

if TYPE_CHECKING:
    from api.bootstrap import Bicameral

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- services ---

# An existing server whose user may create databases; unset, the suite starts one.
POSTGRES_URL_ENV = "TEST_POSTGRES_URL"
# An existing node; unset, the suite starts (or reuses) its own on this port.
ELASTICSEARCH_URL_ENV = "TEST_ELASTICSEARCH_URL"
SUITE_ELASTICSEARCH_PORT = 9250
# Loopback and test nodes are reached directly, whatever *_proxy variables say.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [_elasticsearch_header(), _postgres_header()]


def _postgres_header() -> str:
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        try:
            version = pg_server.server_version(given)
        except pg_server.PostgresServerError as exc:
            return f"postgresql: UNREACHABLE, given by {POSTGRES_URL_ENV} ({exc})"
        return f"postgresql: {version}, given by {POSTGRES_URL_ENV} ({pg_server.redact_url(given)})"
    bin_dir = pg_server.find_pg_bin()
    if bin_dir is None:
        return "postgresql: NOT INSTALLED, postgres tests will fail; apt-get install postgresql"
    return f"postgresql: {pg_server.binary_version(bin_dir)}, started by the suite ({bin_dir})"


def _elasticsearch_header() -> str:
    given = os.environ.get(ELASTICSEARCH_URL_ENV)
    if given:
        try:
            return f"elasticsearch: {_node_version(given)}, given by {ELASTICSEARCH_URL_ENV}"
        except (OSError, ValueError, KeyError) as exc:
            return f"elasticsearch: UNREACHABLE at {pg_server.redact_url(given)} ({exc})"
    origin = f"started by the suite on 127.0.0.1:{SUITE_ELASTICSEARCH_PORT}"
    try:
        # A node left running by an earlier session is the one this session reuses.
        version = _node_version(f"http://127.0.0.1:{SUITE_ELASTICSEARCH_PORT}", timeout=1.0)
    except (OSError, ValueError, KeyError):
        try:
            from tools import search_node
        except ImportError as exc:
            return f"elasticsearch: UNKNOWN, {origin} (tools.search_node: {exc})"
        version = search_node.DEFAULT_VERSION
    return f"elasticsearch: {version}, {origin}"


def _node_version(url: str, timeout: float = 5.0) -> str:
    # Not `GET /`: the bare distribution lacks the module that serves it (405).
    nodes_url = f"{url.rstrip('/')}/_nodes/_local?filter_path=nodes.*.version"
    with _DIRECT.open(nodes_url, timeout=timeout) as response:
        nodes = json.load(response)["nodes"]
        return str(next(iter(nodes.values()))["version"])


# What the suite really ran against, filled in by the fixtures, reported at the end.
_RAN_AGAINST: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RAN_AGAINST:
        return
    terminalreporter.section("real services this run used")
    for line in _RAN_AGAINST.values():
        terminalreporter.write_line(line)
    # Proof that the database-parametrised tests really ran on both, not skipped.
    for database in ("sqlite", "postgres"):
        counts = {
            outcome: sum(
                1
                for report in terminalreporter.stats.get(outcome, [])
                if (outcome == "skipped" or getattr(report, "when", "call") == "call")
                and re.search(rf"[\[-]{database}[\]-]", getattr(report, "nodeid", ""))
            )
            for outcome in ("passed", "failed", "skipped")
        }
        terminalreporter.write_line(
            f"write database {database}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped"
        )


def _failure(reason: str) -> BaseException:
    # A service a test needs and cannot have is a failure, never a skip; the reason is
    # the whole report, so no traceback of the fixture (nor of the error it replaces).
    return pytest.fail.Exception(reason, pytrace=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A postgresql:// URL of a server whose user may create databases."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        if not given.startswith(("postgresql://", "postgres://")):
            raise _failure(f"{POSTGRES_URL_ENV} must be a postgresql:// URL")
        try:
            pg_server.server_version(given)
        except pg_server.PostgresServerError as exc:
            raise _failure(f"{POSTGRES_URL_ENV} names no usable server: {exc}") from None
        _RAN_AGAINST["postgres"] = f"PostgreSQL {pg_server.server_version(given)}, given"
        yield given
        return
    server = pg_server.PostgresServer()
    try:
        server.start()
    except pg_server.PostgresServerError as exc:
        raise _failure(f"could not start PostgreSQL (or set {POSTGRES_URL_ENV}): {exc}") from None
    _RAN_AGAINST["postgres"] = (
        f"PostgreSQL {pg_server.server_version(server.dsn())}, started by the suite"
    )
    try:
        yield server.dsn()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """The base URL of a real Elasticsearch node."""
    given = os.environ.get(ELASTICSEARCH_URL_ENV)
    if given:
        _RAN_AGAINST["elasticsearch"] = f"Elasticsearch {_node_version(given)} at {given}, given"
        return given
    try:
        # Imported here: only tests that ask for a node depend on the module.
        from tools.search_node import ensure_running

        url: str = ensure_running(
            port=SUITE_ELASTICSEARCH_PORT, data_dir=REPO_ROOT / ".data" / "test"
        )
    except Exception as exc:
        raise _failure(
            f"could not start Elasticsearch (or set {ELASTICSEARCH_URL_ENV}): {exc!r}"
        ) from None
    _RAN_AGAINST["elasticsearch"] = f"Elasticsearch {_node_version(url)} at {url}, local node"
    return url


@pytest.fixture
def fresh_postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A new, empty database for one test, as a postgresql+asyncpg:// SQLAlchemy URL."""
    with pg_server.temporary_database(postgres_server_url) as url:
        yield url


# --- the application ---

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty write database: every test that uses it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'write.db'}"
    return str(request.getfixturevalue("fresh_postgres_database"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The write database at the newest schema, migrated with Alembic."""
    from writemodel.database import create_engine
    from writemodel.migrate import migrate

    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def settings(database_url: str, elasticsearch_url: str, tmp_path: Path) -> Settings:
    """Settings of an isolated deployment: its own database and index prefix."""
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        elasticsearch_url=elasticsearch_url,
        index_prefix=f"test-{uuid.uuid4().hex[:10]}",
        embedded_worker=False,
        feed_poll_interval=0.05,
        consistency_timeout=10.0,
    )


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Bicameral]:
    """The composed services over real databases and Elasticsearch; the test drives the worker."""
    from api.bootstrap import build

    app = build(settings)
    await app.start()
    yield app
    await app.search.indices.delete(index=f"{settings.index_prefix}-*", ignore_unavailable=True)
    await app.stop()


@pytest.fixture
async def write_app(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Bicameral]:
    """The composed services for tests of the write side alone: never started, so no
    index is created and Elasticsearch is never contacted."""
    from api.bootstrap import build

    app = build(
        Settings(
            data_dir=tmp_path,
            database_url=database_url,
            elasticsearch_url="http://127.0.0.1:9",  # discard port: nothing may call it
            embedded_worker=False,
        )
    )
    yield app
    await app.stop()
