"""`bicameral serve --workers N`: /metrics adds up what every process counted."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import migrated_and_serving, serve_env

pytestmark = pytest.mark.elasticsearch


def _count(scrape: str, operation: str) -> float:
    pattern = (
        r"bicameral_graphql_request_duration_seconds_count\{"
        rf'operation="{operation}",outcome="ok",type="query"\}} (\S+)'
    )
    match = re.search(pattern, scrape)
    return float(match[1]) if match else 0.0


def test_every_scrape_of_a_multiprocess_serve_counts_the_requests_of_all_processes(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    # A figure left by an earlier run must not be added in.
    stale = tmp_path / "metrics" / "counter_999999.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left by an earlier run")
    env = serve_env(elasticsearch_url, tmp_path, WEB_CONCURRENCY="2")
    with migrated_and_serving(env, tmp_path / "serve.log") as server:
        for _ in range(30):
            # A new connection each time, so the kernel spreads them over the processes.
            with httpx.Client(base_url=server.url, timeout=10) as http:
                answer = http.post("/graphql", json={"query": "query Spread { __typename }"})
                assert answer.status_code == 200
        scrapes = []
        for _ in range(6):
            with httpx.Client(base_url=server.url, timeout=10) as http:
                scrapes.append(http.get("/metrics").text)
        # Each process keeps its own files there, named by its pid.
        pids = {p.stem.rsplit("_", 1)[1] for p in (tmp_path / "metrics").glob("*.db")}

    assert not stale.exists()
    assert len(pids) >= 2, pids
    assert [_count(s, "Spread") for s in scrapes] == [30.0] * 6
    assert all("bicameral_subscribers 0.0" in s for s in scrapes)
