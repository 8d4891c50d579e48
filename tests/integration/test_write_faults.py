"""Every way the write database fails answers with its documented code.

WRITE_DATABASE_UNAVAILABLE promises nothing was written; COMMIT_OUTCOME_UNKNOWN
that the change may have been. Never INTERNAL_SERVER_ERROR. The PostgreSQL
tests stop and crash a server of their own (not the suite's, which other tests
share) under a steady load of mutations, then check each promise against the
rows: every acknowledged write is there, nothing refused as unavailable is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import cast

import pytest
import strawberry
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request

import writemodel.database
from api.bootstrap import Bicameral, build
from api.context import Context
from api.metrics import metrics_endpoint
from api.schema import build_schema
from api.settings import Settings
from domain.product import Product
from tests.identities import ADMIN
from tools import pg_server
from writemodel.database import create_engine
from writemodel.migrate import migrate
from writemodel.sql_repositories import SqlProducts
from writemodel.sql_unit_of_work import SqlUnitOfWork
from writemodel.tables import products

DOCUMENTED = {"WRITE_DATABASE_UNAVAILABLE", "COMMIT_OUTCOME_UNKNOWN"}
# Generous: only a hang (a request held for SQLAlchemy's old 30 s) can exceed it.
HANG = 20.0

CREATE = """
mutation Create($input: CreateProductInput!, $key: String) {
  createProduct(input: $input, idempotencyKey: $key) {
    __typename
    ... on CreateProductSuccess { product { id sku } }
    ... on Error { code message }
  }
}
"""

CHANGE_PRICE = """
mutation Change($input: ChangePriceInput!) {
  changePrice(input: $input) {
    __typename
    ... on Error { code message }
  }
}
"""

READ_MODEL = "{ readModel { indexedUpTo } }"
PRODUCTS = 'query { products(consistencyToken: "1") { totalCount } }'


# --- a PostgreSQL server these tests may stop ---


@pytest.fixture(scope="module")
def own_server() -> Iterator[pg_server.PostgresServer]:
    with pg_server.PostgresServer() as server:
        yield server


def _stop(server: pg_server.PostgresServer, mode: str) -> None:
    """pg_ctl stop: "fast" ends every session, "immediate" is a crash (no checkpoint,
    recovery at the next start). The cluster and its folder stay for a restart."""
    result = server._pg_ctl("stop", "-m", mode, "-t", "30")
    assert result.returncode == 0, result.stdout + result.stderr


def _start(server: pg_server.PostgresServer) -> None:
    result = server._pg_ctl("start", "-l", str(server._log), "-t", "60", "-o", f"-p {server.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    server._pid = server._read_pid()


@pytest.fixture
async def own_database(own_server: pg_server.PostgresServer) -> AsyncIterator[str]:
    if not own_server.running:  # a failed test may have left it stopped
        await asyncio.to_thread(_start, own_server)
    name = f"faults_{uuid.uuid4().hex[:10]}"
    own_server.create_database(name)
    url = own_server.sqlalchemy_url(name)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # The throwaway cluster commits asynchronously; a crash would then lose
            # acknowledged commits for a reason no deployment has.
            await conn.execute(text(f"ALTER DATABASE {name} SET synchronous_commit = on"))
        await migrate(engine)
    finally:
        await engine.dispose()
    yield url


def _app(url: str, tmp_path: Path) -> Bicameral:
    """The write side alone: never started, so Elasticsearch is never contacted."""
    return build(
        Settings(
            data_dir=tmp_path,
            database_url=url,
            elasticsearch_url="http://127.0.0.1:9",
            embedded_worker=False,
            consistency_timeout=1.0,
        )
    )


@pytest.fixture
async def pg_app(own_database: str, tmp_path: Path) -> AsyncIterator[Bicameral]:
    app = _app(own_database, tmp_path)
    yield app
    await app.stop()


@pytest.fixture
def schema() -> strawberry.Schema:
    return build_schema(mask_errors=True)


# --- sending mutations and reading what they answered ---


@dataclasses.dataclass
class Answers:
    acknowledged: dict[str, str] = dataclasses.field(default_factory=dict)  # sku -> id
    codes: dict[str, str] = dataclasses.field(default_factory=dict)  # sku -> error code
    messages: list[str] = dataclasses.field(default_factory=list)

    def refused(self, code: str) -> set[str]:
        return {sku for sku, c in self.codes.items() if c == code}


async def _create(
    schema: strawberry.Schema, app: Bicameral, answers: Answers, sku: str, key: str | None
) -> None:
    result = await schema.execute(
        CREATE,
        variable_values={
            "input": {"sku": sku, "name": f"Fault {sku}", "price": 100, "currency": "EUR"},
            "key": key,
        },
        context_value=Context(app=app, request=None, identity=ADMIN),
    )
    if result.errors:
        (error,) = result.errors
        answers.codes[sku] = (error.extensions or {}).get("code", "?")
        answers.messages.append(error.message)
    else:
        payload = result.data["createProduct"]
        assert payload["__typename"] == "CreateProductSuccess", payload
        answers.acknowledged[sku] = payload["product"]["id"]


async def _load(
    schema: strawberry.Schema, app: Bicameral, answers: Answers, stop: asyncio.Event, client: int
) -> None:
    """One client: mutations back to back, every other one with an idempotency key."""
    n = 0
    while not stop.is_set():
        n += 1
        sku = f"L{client}-{n}"
        await _create(schema, app, answers, sku, f"key-{sku}" if n % 2 else None)
        await asyncio.sleep(0.005)


async def _stored_skus(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.scalars(select(products.c.sku)))
    finally:
        await engine.dispose()


async def _until(answers: Answers, more_than: int) -> None:
    async with asyncio.timeout(HANG):
        while len(answers.acknowledged) <= more_than:
            await asyncio.sleep(0.02)


# --- the tests ---


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_stopped_or_crashed_server_under_load_answers_only_the_documented_codes(
    schema: strawberry.Schema,
    pg_app: Bicameral,
    own_server: pg_server.PostgresServer,
    own_database: str,
    mode: str,
) -> None:
    answers = Answers()
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load(schema, pg_app, answers, stop, c)) for c in range(6)]
    try:
        await _until(answers, 20)  # the pool is warm: its connections will die with the server
        await asyncio.to_thread(_stop, own_server, mode)
        async with asyncio.timeout(HANG):
            while len(answers.codes) < 20:
                await asyncio.sleep(0.02)
        # The read side's questions to the write database fail as clearly.
        context = Context(app=pg_app, request=None, identity=ADMIN)
        status = await schema.execute(READ_MODEL, context_value=context)
        async with asyncio.timeout(HANG):
            waited = await schema.execute(PRODUCTS, context_value=context)
        # /metrics still answers, and says the write database is down.
        scrape = await metrics_endpoint(pg_app)(cast(Request, None))
        await asyncio.to_thread(_start, own_server)
        scrape_after = await metrics_endpoint(pg_app)(cast(Request, None))
        await _until(answers, len(answers.acknowledged) + 20)  # writes go on after the restart
    finally:
        stop.set()
        await asyncio.gather(*clients)

    assert set(answers.codes.values()) <= DOCUMENTED, answers.codes
    assert answers.refused("WRITE_DATABASE_UNAVAILABLE")  # the premise: the outage was met
    assert not any("Unexpected" in m for m in answers.messages)
    for read in (status, waited):
        assert read.errors is not None
        assert [e.extensions for e in read.errors] == [{"code": "WRITE_DATABASE_UNAVAILABLE"}]
    assert scrape.status_code == 200
    assert b"bicameral_write_database_up 0" in scrape.body
    assert b"bicameral_subscribers" in scrape.body
    assert b"bicameral_write_database_up 1" in scrape_after.body
    assert b"bicameral_outbox_head" in scrape_after.body
    stored = await _stored_skus(own_database)
    assert set(answers.acknowledged) <= stored  # every acknowledged write survived
    assert not answers.refused("WRITE_DATABASE_UNAVAILABLE") & stored  # nothing was written


async def _cut_off_commits_by_stopping_the_server(
    server: pg_server.PostgresServer,
    url: str,
    key: str | None,
    schema: strawberry.Schema,
    app: Bicameral,
    sku: str,
) -> Answers:
    """A mutation whose COMMIT is in flight when the server crashes: a deferred
    trigger holds the COMMIT (pg_sleep) until the test has stopped the server."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION hold_commit() RETURNS trigger"
                    " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON events"
                    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()"
                )
            )
        answers = Answers()
        mutation = asyncio.create_task(_create(schema, app, answers, sku, key))
        async with asyncio.timeout(HANG):
            async with engine.connect() as conn:
                while not await conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
                ):
                    await conn.commit()
                    await asyncio.sleep(0.02)
    finally:
        await engine.dispose()
    await asyncio.to_thread(_stop, server, "immediate")
    try:
        async with asyncio.timeout(HANG):
            await mutation
    finally:
        await asyncio.to_thread(_start, server)
    return answers


@pytest.mark.postgres
@pytest.mark.parametrize("key", [None, "the-key"], ids=["without-key", "with-key"])
async def test_a_commit_cut_off_by_a_crash_answers_commit_outcome_unknown(
    schema: strawberry.Schema,
    pg_app: Bicameral,
    own_server: pg_server.PostgresServer,
    own_database: str,
    key: str | None,
) -> None:
    # With a key, the service retries by it, and the retry cannot connect either:
    # the answer must still be that the first COMMIT may have landed.
    answers = await _cut_off_commits_by_stopping_the_server(
        own_server, own_database, key, schema, pg_app, "CUT-1"
    )

    assert answers.codes == {"CUT-1": "COMMIT_OUTCOME_UNKNOWN"}
    assert "may or may not" in answers.messages[0]


async def test_an_exhausted_pool_answers_write_database_unavailable_without_a_long_hang(
    schema: strawberry.Schema, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    app = _app(database_url, tmp_path)
    held = []
    try:
        pool = app.engine.pool
        size = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
        for _ in range(size):
            held.append(await app.engine.connect())
        answers = Answers()
        async with asyncio.timeout(HANG):
            await _create(schema, app, answers, "POOL-1", None)
        assert answers.codes == {"POOL-1": "WRITE_DATABASE_UNAVAILABLE"}
    finally:
        for conn in held:
            await conn.close()
        await app.stop()
    # Nothing was written, and with connections free again it goes through.
    answers = Answers()
    app = _app(database_url, tmp_path)
    try:
        await _create(schema, app, answers, "POOL-1", None)
    finally:
        await app.stop()
    assert set(answers.acknowledged) == {"POOL-1"}


@pytest.mark.parametrize("database_url", [pytest.param("sqlite", id="sqlite")], indirect=True)
async def test_a_sqlite_write_lock_that_stays_taken_answers_write_database_unavailable(
    schema: strawberry.Schema,
    database_url: str,
    engine: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writemodel.database, "SQLITE_BUSY_SECONDS", 1)
    app = _app(database_url, tmp_path)
    try:
        async with engine.connect() as holder:
            await holder.begin()  # BEGIN IMMEDIATE: the write lock, held
            answers = Answers()
            async with asyncio.timeout(HANG):
                await _create(schema, app, answers, "LOCKED-1", None)
        assert answers.codes == {"LOCKED-1": "WRITE_DATABASE_UNAVAILABLE"}
        assert "LOCKED-1" not in await _stored_skus(database_url)
    finally:
        await app.stop()


@pytest.mark.postgres
async def test_a_lock_timeout_answers_write_database_unavailable_and_writes_nothing(
    schema: strawberry.Schema, pg_app: Bicameral, own_database: str
) -> None:
    answers = Answers()
    await _create(schema, pg_app, answers, "LOCK-1", None)
    product_id = answers.acknowledged["LOCK-1"]
    engine = create_engine(own_database)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"ALTER DATABASE {own_database.rsplit('/', 1)[1]} SET lock_timeout = '300ms'")
            )
        await pg_app.engine.dispose()  # new sessions take the setting
        async with engine.begin() as holder:
            await holder.execute(
                text("SELECT 1 FROM products WHERE id = :id FOR UPDATE"), {"id": product_id}
            )
            async with asyncio.timeout(HANG):
                result = await schema.execute(
                    CHANGE_PRICE,
                    variable_values={"input": {"productId": product_id, "price": 777}},
                    context_value=Context(app=pg_app, request=None, identity=ADMIN),
                )
        assert result.errors is not None
        assert [e.extensions for e in result.errors] == [{"code": "WRITE_DATABASE_UNAVAILABLE"}]
        async with engine.connect() as conn:
            price = await conn.scalar(select(products.c.price).where(products.c.id == product_id))
        assert price == 100
    finally:
        await engine.dispose()


class ProductsWrittenByAnotherFirst(SqlProducts):
    def __init__(self, conn: AsyncConnection, other: AsyncEngine) -> None:
        super().__init__(conn)
        self.other = other

    async def _save(self, product: Product, now: datetime) -> None:
        async with self.other.begin() as conn:
            await conn.execute(
                text("UPDATE products SET version = version + 1 WHERE id = :id"),
                {"id": product.id},
            )
        await super()._save(product, now)


class ConcurrentWriterBeforeTheSave(SqlUnitOfWork):
    """Another transaction commits a newer version of the row just before this unit
    of work saves it: the race a guarded UPDATE loses at commit, made certain."""

    def __init__(self, engine: AsyncEngine, other: AsyncEngine) -> None:
        super().__init__(engine)
        self.other = other

    async def __aenter__(self) -> SqlUnitOfWork:
        await super().__aenter__()
        self.products = ProductsWrittenByAnotherFirst(self.connection, self.other)
        return self


@pytest.mark.postgres
async def test_a_version_conflict_found_at_commit_reports_the_version_it_ran_into(
    schema: strawberry.Schema, pg_app: Bicameral, own_database: str
) -> None:
    answers = Answers()
    await _create(schema, pg_app, answers, "RACE-1", None)
    product_id = answers.acknowledged["RACE-1"]
    other = create_engine(own_database)
    pg_app.commands.unit_of_work = lambda: ConcurrentWriterBeforeTheSave(pg_app.engine, other)
    try:
        result = await schema.execute(
            """
            mutation Change($input: ChangePriceInput!) {
              changePrice(input: $input) {
                __typename
                ... on VersionConflictError { code expectedVersion actualVersion }
              }
            }
            """,
            variable_values={
                "input": {"productId": product_id, "price": 555, "expectedVersion": 1}
            },
            context_value=Context(app=pg_app, request=None, identity=ADMIN),
        )
    finally:
        await other.dispose()

    assert result.errors is None, result.errors
    assert result.data["changePrice"] == {
        "__typename": "VersionConflictError",
        "code": "VERSION_CONFLICT",
        "expectedVersion": 1,
        "actualVersion": 2,
    }
