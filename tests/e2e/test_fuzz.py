"""The schema fuzzed over HTTP: valid queries and mutations that hypothesis-graphql
generates from `schema.graphql`, with hostile text and edge numbers, sent to a
running `bicameral serve` on SQLite and on PostgreSQL (embedded worker on both).

Every answer must be a GraphQL answer: no 5xx, no INTERNAL_SERVER_ERROR, JSON of
the GraphQL-over-HTTP shape, within a deadline that detects hangs (not speed).
Afterwards every read model must still reach the write side's head.

Most operations are sent as an admin, so that they get past the access rules to
every path; the others as staff, a customer, a customer not yet registered, or
anonymously (`fuzz_operations.CALLERS`), so that the policy is fuzzed too. A
refusal (FORBIDDEN, UNAUTHENTICATED) is a proper answer; a 5xx never is.

Reproducing a failure: the examples are derandomized (the same ones every run
for the same schema and Hypothesis version), and the failure names the request
body, the answer and what the server logged meanwhile; every failing body is
also written whole, one JSON line each, to `fuzz-failures.jsonl` beside the
server's log. The server's state grows over the run, so a body may need the
earlier ones to fail again: send the file's lines in order to a fresh server,
each with its line's caller's token.
The root fields of a query run concurrently, and an error that nulls `data`
cancels the ones still running, so a replay may not fail the same way:
Hypothesis then reports a FlakyFailure, with the first failure's answer and
log. That is a fault all the same, not a flaky test.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from api.identity import Role
from tests.e2e.conftest import Server, migrated_and_serving, serve_env
from tests.e2e.fuzz_operations import CALLERS, Known, Operation, answer_problems, operations
from tools import pg_server

pytestmark = pytest.mark.elasticsearch

# Per database. Enough to visit every root field many times over, small enough for CI.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
# An answer slower than this is a hang, not a slow answer (the consistency wait is 1 s here).
ANSWER_DEADLINE = 15.0
# How long the read models get to reach the head once the fuzzing stops.
CATCH_UP_DEADLINE = 60.0


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def fuzzed_server(
    request: pytest.FixtureRequest, elasticsearch_url: str, tmp_path: Path
) -> Iterator[Server]:
    """`bicameral migrate` and `bicameral serve`, with its embedded worker, on a fresh
    SQLite file or a fresh PostgreSQL database."""
    with ExitStack() as stack:
        database_url = ""
        if request.param == "postgres":
            database_url = stack.enter_context(
                pg_server.temporary_database(
                    request.getfixturevalue("postgres_server_url"), prefix="fuzz_"
                )
            )
        env = serve_env(
            elasticsearch_url,
            tmp_path,
            DATABASE_URL=database_url,
            INDEX_PREFIX=f"fuzz-{uuid.uuid4().hex[:8]}",
            EMBEDDED_WORKER="true",
            # Random tokens far ahead wait this long each: short keeps the run short.
            CONSISTENCY_TIMEOUT="1",
        )
        yield stack.enter_context(migrated_and_serving(env, tmp_path / "serve.log"))


def test_every_generated_operation_gets_a_proper_answer_and_the_feed_keeps_up(
    fuzzed_server: Server,
) -> None:
    with httpx.Client(base_url=fuzzed_server.url, timeout=ANSWER_DEADLINE) as client:
        admin = fuzzed_server.headers(Role.ADMIN, subject="fuzz-admin")
        known = _seed(client, admin)
        callers = _callers(fuzzed_server, known)
        sent: Counter[str] = Counter()
        log = _LogTail(fuzzed_server.log)
        failures = fuzzed_server.log.parent / "fuzz-failures.jsonl"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
            print_blob=True,
        )
        @given(operation=operations(known))
        def answers_properly(operation: Operation) -> None:
            log.skip()
            sent[operation.caller] += 1
            try:
                response = client.post(
                    "/graphql",
                    content=operation.body(),
                    headers={
                        "content-type": "application/json",
                        "accept": "application/json",
                        **callers[operation.caller],
                    },
                )
            except httpx.TransportError as error:
                # A timeout past the deadline, or a connection the server dropped.
                _record(failures, operation, f"no answer: {error!r}")
                raise AssertionError(
                    f"no answer within {ANSWER_DEADLINE} s: {error!r}\n"
                    f"server log:\n{log.new()}\nevery failing body, whole: {failures}"
                ) from None
            problems = answer_problems(
                response.status_code, response.headers.get("content-type", ""), response.text
            )
            if problems:
                _record(failures, operation, response.text)
            context = (
                f"answer: {response.text[:2000]}\nserver log:\n{log.new()}\n"
                f"every failing body, whole: {failures}"
            )
            assert response.status_code < 500, context
            assert not [p for p in problems if "INTERNAL_SERVER_ERROR" in p], context
            assert not problems, context

        try:
            answers_properly()
        finally:
            behind = _read_models_behind(client, admin)
            print(f"read models behind their head after the fuzzing: {behind}")
            print(f"operations sent per caller: {dict(sent)}")
        if EXAMPLES >= 100:  # enough for every caller to be drawn (fuzz_operations.CALLERS)
            assert sent.keys() == set(CALLERS), f"a caller never sent anything: {sent}"
        assert not behind, f"the feed stalled: {behind}\nserver log:\n{log.all()[-5000:]}"
        assert client.get("/healthz").status_code == 200


def _callers(server: Server, known: Known) -> dict[str, dict[str, str]]:
    """The Authorization of each of `CALLERS` (none for anonymous)."""
    callers = {
        "admin": server.headers(Role.ADMIN, subject="fuzz-admin"),
        "staff": server.headers(Role.STAFF, subject="fuzz-staff"),
        "customer": server.headers(
            Role.CUSTOMER, customer_id=known.customers[0], subject="fuzz-customer"
        ),
        "newcomer": server.headers(Role.CUSTOMER, subject="fuzz-newcomer"),
        "anonymous": {},
    }
    assert callers.keys() == set(CALLERS)
    return callers


def _seed(client: httpx.Client, admin: dict[str, str]) -> Known:
    """Products, customers and orders, whose ids, skus and emails the fuzzing reuses;
    several of each, so that one discontinued or erased does not end every path."""
    known = Known()
    # Prices from 2.50 to 25,000.00: a large enough quantity makes a total past 2^31.
    for n in range(5):
        created = _mutate(
            client,
            admin,
            "createProduct",
            "CreateProductInput",
            {"sku": f"FUZZ-{n}", "name": f"Fuzz {n}", "price": 250 * 10**n, "currency": "EUR"}
            | {"initialStock": 1000},
            "product { id }",
        )
        known.products.append(created["product"]["id"])
        known.skus.append(f"FUZZ-{n}")
    for n in range(2):
        registered = _mutate(
            client,
            admin,
            "registerCustomer",
            "RegisterCustomerInput",
            {"email": f"fuzz{n}@example.com", "name": f"Fuzz {n}"},
            "customer { id }",
        )
        known.customers.append(registered["customer"]["id"])
        known.emails.append(f"fuzz{n}@example.com")
        placed = _mutate(
            client,
            admin,
            "placeOrder",
            "PlaceOrderInput",
            {"customerId": known.customers[-1], "lines": [{"sku": "FUZZ-0", "quantity": 1}]},
            "order { id }",
        )
        known.orders.append(placed["order"]["id"])
        known.tokens.append(placed["consistencyToken"])
    return known


def _mutate(
    client: httpx.Client,
    admin: dict[str, str],
    name: str,
    input_type: str,
    value: dict[str, Any],
    selection: str,
) -> dict[str, Any]:
    document = (
        f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ __typename "
        f"... on Error {{ code message }} "
        f"... on {name[0].upper()}{name[1:]}Success {{ consistencyToken {selection} }} }} }}"
    )
    response = client.post(
        "/graphql", json={"query": document, "variables": {"input": value}}, headers=admin
    )
    result: dict[str, Any] = response.json()["data"][name]
    assert result["__typename"].endswith("Success"), result
    return result


def _read_models_behind(client: httpx.Client, admin: dict[str, str]) -> list[dict[str, Any]]:
    """The read models still short of the write side's head once the deadline passes."""
    deadline = time.monotonic() + CATCH_UP_DEADLINE
    while True:
        try:
            response = client.post(
                "/graphql",
                json={"query": "{ readModel { projections { name position head } } }"},
                headers=admin,
            )
            projections = response.json()["data"]["readModel"]["projections"]
            behind = [p for p in projections if p["position"] < p["head"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            behind = [{"readModel": f"unanswered: {error!r}"}]
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.5)


def _record(failures: Path, operation: Operation, answer: str) -> None:
    with failures.open("a") as out:
        record = {"caller": operation.caller, "body": operation.body().decode()}
        out.write(json.dumps(record | {"answer": answer[:2000]}) + "\n")


class _LogTail:
    """What the server logged since the last request began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size

    def new(self) -> str:
        """What the service logged since, less strawberry's copy of every GraphQL
        error (user errors included): what remains is the service's own word."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return _own_records(log.read().decode(errors="replace"))[-4000:] or "(nothing)"

    def all(self) -> str:
        return _own_records(self.path.read_text(errors="replace"))


def _own_records(log: str) -> str:
    records = re.split(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return "".join(r for r in records if "strawberry.execution:" not in r[:60])
