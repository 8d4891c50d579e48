"""The query budget over HTTP, on a running service with a budget of 20 a minute:
a client over it answers 429 with `Retry-After` and `RATE_LIMITED`, and another
client (here: another address, named by X-Forwarded-For, which uvicorn trusts
from 127.0.0.1 by default, as from a reverse proxy on the same machine) goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, migrated_and_serving, serve_env

pytestmark = pytest.mark.elasticsearch

# Costs 12: `__schema` 1, `types` a list counted as 10 (1 + 10 x 1 for `name`).
TWELVE = "{ __schema { types { name } } }"
# Generous: only a hang could miss it.
ANSWER_WITHIN = 10.0


@pytest.fixture
def tight_server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    env = serve_env(elasticsearch_url, tmp_path, BUDGET_PER_MINUTE="20")
    with migrated_and_serving(env, tmp_path / "serve.log") as server:
        yield server


def post(server: Server, query: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql", json={"query": query}, headers=headers, timeout=ANSWER_WITHIN
    )


def budget(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = response.json()["extensions"]["cost"]["budget"]
    return found


def test_a_client_over_its_budget_gets_429_and_rate_limited_with_retry_after(
    tight_server: Server,
) -> None:
    first = post(tight_server, TWELVE)
    refused = post(tight_server, TWELVE)

    assert first.status_code == 200, first.text
    assert budget(first) == {"perMinute": 20, "remaining": 8, "resetsIn": 36}
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60
    assert refused.headers["retry-after"] == str(retry_after)
    assert budget(refused)["remaining"] < 12


def test_another_client_is_not_affected_by_one_over_its_budget(tight_server: Server) -> None:
    post(tight_server, TWELVE)
    assert post(tight_server, TWELVE).status_code == 429

    elsewhere = post(tight_server, TWELVE, **{"X-Forwarded-For": "203.0.113.7"})

    assert elsewhere.status_code == 200, elsewhere.text
    assert "errors" not in elsewhere.json()
    assert budget(elsewhere)["remaining"] == 8
    assert post(tight_server, TWELVE).status_code == 429
