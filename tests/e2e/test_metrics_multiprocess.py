"""`bicameral serve --workers N`: /metrics adds up what every process counted; a
separate `bicameral worker` serves its own figures on WORKER_METRICS_PORT."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BIN, _free_port, _running, migrated_and_serving, serve_env

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


def test_a_separate_worker_serves_its_feed_figures_on_its_metrics_port(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = serve_env(elasticsearch_url, tmp_path, WORKER_METRICS_PORT=str(port))
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    try:
        asyncio.run(_create_a_product(env))
        with _running("worker", env, tmp_path / "worker.log") as worker:
            deadline = time.monotonic() + 30
            while True:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                try:
                    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.TransportError:
                    scrape = ""
                if re.search(r"^bicameral_feed_batch_events_sum 1\.0$", scrape, re.M):
                    break
                assert time.monotonic() < deadline, scrape[-3000:]
                time.sleep(0.2)
    finally:
        httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)

    assert re.search(r"^bicameral_feed_batch_duration_seconds_count 1\.0$", scrape, re.M)
    assert "bicameral_bulk_retries_total 0.0" in scrape


async def _create_a_product(env: dict[str, str]) -> None:
    """One command written by another process (as an API would), for the worker to project."""
    from api.bootstrap import build
    from api.settings import Settings
    from domain import commands as c
    from writemodel.access import SYSTEM

    settings = Settings(
        data_dir=Path(env["DATA_DIR"]),
        elasticsearch_url=env["ELASTICSEARCH_URL"],
        index_prefix=env["INDEX_PREFIX"],
    )
    app = build(settings, embedded_worker=False)
    try:
        await app.commands.execute(
            c.CreateProduct(sku="WM-1", name="Worked", price=1, currency="EUR"), actor=SYSTEM
        )
    finally:
        await app.stop()
