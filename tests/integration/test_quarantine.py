"""A document Elasticsearch refuses for itself is quarantined and the feed goes on,
on SQLite and PostgreSQL against a real Elasticsearch.

The refused document is made without any domain text rule in the way: the
test writes a product's row directly (a tag of 40,000 characters: Lucene takes
no term over 32,766 bytes, so Elasticsearch refuses the document with a 400),
then a normal command on that product sends it through the feed. Fixing the
row by hand is the operator's fix; `quarantine retry` then writes it.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from elasticsearch import AsyncElasticsearch
from sqlalchemy import update

from api.app import create_app
from api.bootstrap import Bicameral
from api.context import Context
from api.schema import build_schema
from domain import commands as c
from readmodel import checkpoints as checkpoints_module
from readmodel.bulk import BulkError, BulkWriter, Write, refused_for_itself
from readmodel.feed import FeedWorker
from readmodel.projections import IndexDocument, default_projections
from tests.identities import ADMIN
from tests.integration.faults import BIN, READ_MODELS, worker_env
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.tables import products

pytestmark = pytest.mark.elasticsearch

IMMENSE = "x" * 40_000


async def _product(app: Bicameral, sku: str, **extra: Any) -> str:
    fields: dict[str, Any] = {"name": f"Product {sku}", "price": 1000, "currency": "EUR"}
    fields.update(extra)
    return str(
        (await app.commands.execute(c.CreateProduct(sku=sku, **fields), actor=SYSTEM)).snapshot[
            "id"
        ]
    )


async def _set_tags(app: Bicameral, product_id: str, tags: list[str]) -> None:
    """Change a product's row behind the domain's back (no event)."""
    async with app.engine.begin() as conn:
        await conn.execute(update(products).where(products.c.id == product_id).values(tags=tags))


async def _poisoned(app: Bicameral, sku: str = "POISON-1") -> tuple[str, int]:
    """A product whose document Elasticsearch refuses, and the token of the command
    that sends it through the feed (a price change after the row was poisoned)."""
    product = await _product(app, sku, initial_stock=50)
    await app.worker.run_until_caught_up()
    await _set_tags(app, product, [IMMENSE])
    changed = await app.commands.execute(c.ChangePrice(product, 1500), actor=SYSTEM)
    assert changed.position is not None
    return product, changed.position


async def _head(app: Bicameral) -> int:
    async with app.engine.connect() as conn:
        return (await outbox.head(conn))[0]


async def _count(app: Bicameral, name: str, **query: Any) -> int:
    alias = f"{app.settings.index_prefix}-{name}"
    await app.search.indices.refresh(index=alias)
    body = query or {"match_all": {}}
    return int((await app.search.count(index=alias, query=body))["count"])


async def test_a_refused_document_is_quarantined_while_the_next_writes_of_every_kind_flow(
    app: Bicameral,
) -> None:
    poisoned, token = await _poisoned(app)
    # The next 100 writes of each kind, in the same batches as the refused document.
    for n in range(100):
        product = await _product(app, f"FLOW-{n}", initial_stock=5, tags=("flow",))
        customer = await app.commands.execute(
            c.RegisterCustomer(f"flow{n}@example.com", "Flow"), actor=SYSTEM
        )
        await app.commands.execute(
            c.PlaceOrder(customer.snapshot["id"], (c.OrderLineRequest(f"FLOW-{n}", 1),)),
            actor=SYSTEM,
        )
        assert product

    await app.worker.run_until_caught_up()

    entries = await app.worker.quarantine.entries()
    assert [(e.read_model, e.document_id, e.attempts, e.active) for e in entries] == [
        ("products", poisoned, 1, True)
    ]
    entry = entries[0]
    assert entry.index_name == f"{app.settings.index_prefix}-products"
    assert entry.error_type == "document_parsing_exception"
    assert "[tags]" in entry.reason and len(entry.reason) <= 1000
    assert token in entry.positions and entry.version == token
    assert await app.worker.quarantine.counts() == {"products": 1}
    # Every checkpoint is at the head: nothing waits behind the refused document.
    head = await _head(app)
    assert {cp.name: cp.position for cp in await app.checkpoints.all()} == dict.fromkeys(
        READ_MODELS, head
    )
    assert await _count(app, "products", term={"tags": "flow"}) == 100
    assert await _count(app, "customers", term={"email": "flow99@example.com"}) == 1
    assert await _count(app, "customers") == 100
    assert await _count(app, "orders") == 100
    # The refused document is as it was before: its old price, its old tags.
    doc = await app.reader.get("products", poisoned)
    assert doc is not None and (doc["price"], doc["tags"]) == (1000, [])


async def test_a_token_whose_document_was_quarantined_answers_at_once_and_says_so(
    app: Bicameral,
) -> None:
    poisoned, token = await _poisoned(app)
    fine = await app.commands.execute(c.RegisterCustomer("fine@example.com", "Fine"), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    schema: strawberry.Schema = build_schema()
    query = "query($id: ID!, $token: String) { product(id: $id, consistencyToken: $token) { id } }"

    context = Context(app=app, request=None, identity=ADMIN)
    result = await schema.execute(
        query, variable_values={"id": poisoned, "token": str(token)}, context_value=context
    )

    assert result.errors is None, result.errors
    assert result.data == {"product": {"id": poisoned}}
    assert context.stale == []
    assert context.quarantined == [
        {"field": "product", "token": str(token), "readModel": "products", "id": poisoned}
    ]
    # The client hears of it in the response's extensions.
    assert result.extensions is not None
    assert result.extensions["consistency"] == {"quarantined": context.quarantined}
    # A token of a write that went in is not flagged, nor is another read model's.
    for read, token_of in (("product", fine.position), ("customers", token)):
        other = Context(app=app, request=None, identity=ADMIN)
        text = (
            "query($id: ID!, $token: String) { product(id: $id, consistencyToken: $token) { id } }"
            if read == "product"
            else "query($token: String) { customers(consistencyToken: $token) { totalCount } }"
        )
        variables: dict[str, Any] = {"token": str(token_of)}
        if read == "product":
            variables["id"] = poisoned
        answer = await schema.execute(text, variable_values=variables, context_value=other)
        assert answer.errors is None, answer.errors
        assert (other.stale, other.quarantined) == ([], [])


async def test_a_token_finds_the_refused_documents_of_every_event_of_its_command(
    app: Bicameral,
) -> None:
    poisoned, _ = await _poisoned(app)
    buyer = await app.commands.execute(
        c.RegisterCustomer("buyer@example.com", "Buyer"), actor=SYSTEM
    )
    await app.worker.run_until_caught_up()
    # An order for the poisoned product: its stock event re-projects the product, which
    # is refused again; the order's token is its command's last event, not that one.
    order = await app.commands.execute(
        c.PlaceOrder(buyer.snapshot["id"], (c.OrderLineRequest("POISON-1", 2),)), actor=SYSTEM
    )
    assert order.position is not None
    await app.worker.run_until_caught_up()

    found = await app.worker.quarantine.at(order.position, ["products", "orders"])

    assert [(e.read_model, e.document_id, e.attempts) for e in found] == [("products", poisoned, 2)]
    assert await app.reader.get("orders", order.snapshot["id"]) is not None


async def test_retry_after_the_fix_makes_the_document_searchable_and_clears_the_entry(
    app: Bicameral,
) -> None:
    poisoned, _ = await _poisoned(app)
    await app.worker.run_until_caught_up()
    store = app.worker.quarantine

    def retry() -> Any:
        return store.retry(
            None,
            projections=app.worker.projections,
            writer=app.worker.writer,
            prefix=app.settings.index_prefix,
            now=app.now(),
        )

    # Not fixed yet: refused again, kept with one more attempt.
    again = await retry()
    assert ([e.document_id for e in again.refused], again.cleared) == ([poisoned], [])
    [entry] = await store.entries()
    assert entry.attempts == 2 and entry.active and "[tags]" in entry.reason

    await _set_tags(app, poisoned, ["mended"])
    done = await retry()

    assert ([e.document_id for e in done.cleared], done.refused) == ([poisoned], [])
    assert await store.entries() == []
    assert await store.counts() == {}
    doc = await app.reader.get("products", poisoned)
    assert doc is not None and (doc["price"], doc["tags"]) == (1500, ["mended"])
    assert await _count(app, "products", term={"tags": "mended"}) == 1


async def test_a_later_write_the_index_takes_supersedes_the_entry(app: Bicameral) -> None:
    poisoned, token = await _poisoned(app)
    await app.worker.run_until_caught_up()
    await _set_tags(app, poisoned, ["mended"])
    later = await app.commands.execute(c.ChangePrice(poisoned, 2000), actor=SYSTEM)

    await app.worker.run_until_caught_up()

    [entry] = await app.worker.quarantine.entries()
    assert entry.superseded_at is not None and not entry.active
    assert await app.worker.quarantine.counts() == {}
    assert await app.worker.quarantine.at(token, ["products"]) == []
    doc = await app.reader.get("products", poisoned)
    assert doc is not None and (doc["price"], doc["position"]) == (2000, later.position)
    # Refused again later: active again, one more attempt.
    await _set_tags(app, poisoned, [IMMENSE])
    await app.commands.execute(c.ChangePrice(poisoned, 2500), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    [entry] = await app.worker.quarantine.entries()
    assert (entry.active, entry.attempts) == (True, 2)


async def test_drop_forgets_entries_and_metrics_count_them_per_read_model(
    app: Bicameral,
) -> None:
    first, _ = await _poisoned(app, "POISON-1")
    await _poisoned(app, "POISON-2")
    await app.worker.run_until_caught_up()
    transport = httpx.ASGITransport(app=create_app(bicameral=app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = (await client.get("/metrics")).text
        ids = {e.document_id: e.id for e in await app.worker.quarantine.entries()}
        assert await app.worker.quarantine.drop([ids[first]]) == 1
        middle = (await client.get("/metrics")).text
        assert await app.worker.quarantine.drop(None) == 1
        after = (await client.get("/metrics")).text

    assert "# TYPE bicameral_quarantined_documents gauge" in before
    assert 'bicameral_quarantined_documents{projection="products"} 2' in before
    assert 'bicameral_quarantined_documents{projection="orders"} 0' in before
    assert 'bicameral_quarantined_documents{projection="products"} 1' in middle
    assert 'bicameral_quarantined_documents{projection="products"} 0' in after
    assert await app.worker.quarantine.entries() == []


async def test_the_entry_and_the_checkpoints_commit_together_or_not_at_all(
    app: Bicameral, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.worker.run_until_caught_up()
    before = (await app.checkpoints.get("products")).position
    poisoned, _ = await _poisoned_without_catching_up(app)
    real_settle = checkpoints_module.settle

    async def settle_then_die(*args: Any, **kwargs: Any) -> None:
        await real_settle(*args, **kwargs)
        raise RuntimeError("the worker died before its commit")

    monkeypatch.setattr(checkpoints_module, "settle", settle_then_die)
    with pytest.raises(RuntimeError, match="died"):
        await app.worker.run_once()
    assert (await app.checkpoints.get("products")).position == before
    assert await app.worker.quarantine.entries() == []

    monkeypatch.setattr(checkpoints_module, "settle", real_settle)
    await app.worker.run_until_caught_up()
    # Refused twice by Elasticsearch, recorded once: the first record rolled back.
    [entry] = await app.worker.quarantine.entries()
    assert (entry.document_id, entry.attempts) == (poisoned, 1)
    assert (await app.checkpoints.get("products")).position == await _head(app)


async def test_a_write_block_quarantines_nothing_and_keeps_the_checkpoint(
    app: Bicameral,
) -> None:
    await app.worker.run_until_caught_up()
    alias = f"{app.settings.index_prefix}-products"
    await app.search.indices.put_settings(index=alias, settings={"index.blocks.write": True})
    try:
        await _product(app, "BLOCKED-1")
        # The poisoned document too: under the block it is not refused for itself.
        poisoned, _ = await _poisoned_without_catching_up(app)
        before = (await app.checkpoints.get("products")).position
        blocked = await _worker(app, app.search)
        with pytest.raises(BulkError):
            await blocked.run_once()
        await app.checkpoints.release(list(READ_MODELS), blocked.owner)
        assert (await app.checkpoints.get("products")).position == before
        assert await app.worker.quarantine.entries() == []
    finally:
        await app.search.indices.put_settings(index=alias, settings={"index.blocks.write": False})

    await app.worker.run_until_caught_up()
    assert await _count(app, "products", term={"sku": "BLOCKED-1"}) == 1
    # Once the block is lifted the poisoned document is refused for itself, and only it.
    assert [e.document_id for e in await app.worker.quarantine.entries()] == [poisoned]


async def test_an_unreachable_node_quarantines_nothing_and_keeps_the_checkpoint(
    app: Bicameral, unused_tcp_port: int
) -> None:
    await app.worker.run_until_caught_up()
    before = (await app.checkpoints.get("products")).position
    await _poisoned_without_catching_up(app)
    unreachable = AsyncElasticsearch(f"http://127.0.0.1:{unused_tcp_port}", max_retries=0)
    try:
        broken = await _worker(app, unreachable)
        with pytest.raises(BulkError):
            await broken.run_once()
        await app.checkpoints.release(list(READ_MODELS), broken.owner)
    finally:
        await unreachable.close()

    assert (await app.checkpoints.get("products")).position == before
    assert await app.worker.quarantine.entries() == []


async def test_the_cli_lists_retries_and_drops_entries(app: Bicameral, tmp_path: Path) -> None:
    poisoned, _ = await _poisoned(app)
    await app.worker.run_until_caught_up()
    env = worker_env(app.settings, tmp_path)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "bicameral"), "readmodel", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = await cli("quarantine", "list")
    status = await cli("status")
    refused = await cli("quarantine", "retry", "--all")
    nothing = await cli("quarantine", "drop")

    assert listed.returncode == 0, listed.stderr
    assert f"products/{poisoned}" in listed.stdout
    assert "document_parsing_exception" in listed.stdout
    assert status.returncode == 0, status.stderr
    assert "quarantined" in status.stdout.splitlines()[0]
    assert "products: 1 documents refused by Elasticsearch" in status.stdout
    assert refused.returncode == 1 and "refused again, entry kept" in refused.stdout
    assert nothing.returncode == 2 and "give entry ids or --all" in nothing.stderr

    await _set_tags(app, poisoned, ["mended"])
    [entry] = await app.worker.quarantine.entries()
    retried = await cli("quarantine", "retry", str(entry.id))
    assert retried.returncode == 0, retried.stderr
    assert "written, entry cleared" in retried.stdout
    assert await _count(app, "products", term={"tags": "mended"}) == 1

    await _set_tags(app, poisoned, [IMMENSE])
    await app.commands.execute(c.ChangePrice(poisoned, 1700), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    dropped = await cli("quarantine", "drop", "--all")
    empty = await cli("quarantine", "list")
    assert dropped.returncode == 0 and "dropped 1 entries" in dropped.stdout
    assert empty.stdout.strip() == "no documents in quarantine"


async def test_the_bulk_writer_returns_every_kind_of_document_refused_and_applies_the_rest(
    elasticsearch_url: str,
) -> None:
    index = f"test-refusals-{uuid.uuid4().hex[:10]}"
    client = AsyncElasticsearch(elasticsearch_url)
    mapping = {
        "dynamic": "strict",
        "properties": {
            "tag": {"type": "keyword"},
            "small": {"type": "byte"},
            "suggest": {"type": "completion", "analyzer": "standard"},
        },
    }
    bad = {
        "immense": {"tag": IMMENSE},
        "nul": {"suggest": {"input": ["nul\u0000byte"]}},
        "separator": {"suggest": {"input": ["unit\u001fseparator"]}},
        "out-of-range": {"small": 1000},
        "unmapped": {"colour": "red"},
        "not-a-number": {"small": "many"},
    }
    good = {f"good-{n}": {"tag": "fine", "small": n} for n in range(5)}
    try:
        await client.indices.create(index=index, mappings=mapping)
        actions = [IndexDocument(id, 7, doc) for id, doc in [*bad.items(), *good.items()]]
        refused = await BulkWriter(client).write_all([Write(index, actions)])
        found = await client.count(index=index, query={"term": {"tag": "fine"}})
        total = await client.count(index=index)
    finally:
        await client.indices.delete(index=index, ignore_unavailable=True)
        await client.close()

    assert sorted(r.action.id for r in refused) == sorted(bad)
    assert {r.status for r in refused} == {400} and {r.target for r in refused} == {index}
    assert all(r.reason and len(r.reason) <= 1000 for r in refused)
    assert found["count"] == total["count"] == len(good)


def test_a_reason_quoting_a_nul_or_a_lone_surrogate_is_stored_escaped() -> None:
    error = {"type": "document_parsing_exception", "reason": "Illegal input [a\u0000b\ud800]"}
    assert refused_for_itself(400, error) == (
        "document_parsing_exception",
        "Illegal input [a\\u0000b\\ud800]",
    )


@pytest.mark.parametrize(
    ("status", "error", "own"),
    [
        (400, {"type": "document_parsing_exception", "reason": "failed to parse"}, True),
        (400, {"type": "mapper_parsing_exception", "reason": "failed to parse"}, True),
        (400, {"type": "illegal_argument_exception", "reason": "immense term"}, True),
        (400, {"type": "illegal_argument_exception", "reason": "no write index is defined"}, False),
        (400, {"type": "action_request_validation_exception", "reason": "bad request"}, False),
        (403, {"type": "cluster_block_exception", "reason": "blocked"}, False),
        (404, {"type": "index_not_found_exception", "reason": "no such index"}, False),
        (429, {"type": "es_rejected_execution_exception", "reason": "queue full"}, False),
        (503, {"type": "unavailable_shards_exception", "reason": "primary shard"}, False),
    ],
)
def test_only_a_400_about_the_document_itself_counts_as_its_own_refusal(
    status: int, error: dict[str, str], own: bool
) -> None:
    assert (refused_for_itself(status, error) is not None) is own


# --- helpers ---


async def _worker(app: Bicameral, client: AsyncElasticsearch) -> FeedWorker:
    """Another worker over the app's database, writing through `client`, giving up soon;
    the app's own worker lets go of its leases for it."""
    await app.worker.release_leases()
    worker = FeedWorker(
        app.engine, client, default_projections(), index_prefix=app.settings.index_prefix
    )
    worker._indexes_ready = True  # the indexes exist; only the bulk call is in question
    worker.writer = BulkWriter(client, max_attempts=2, base_delay=0.01)
    return worker


async def _poisoned_without_catching_up(app: Bicameral) -> tuple[str, int]:
    product = await _product(app, "POISON-W", initial_stock=1)
    await _set_tags(app, product, [IMMENSE])
    changed = await app.commands.execute(c.ChangePrice(product, 1500), actor=SYSTEM)
    assert changed.position is not None
    return product, changed.position
