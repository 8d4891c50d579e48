"""`bicameral readmodel rebuild` off a terminal: plain progress lines, no carriage returns."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BIN, serve_env

pytestmark = pytest.mark.elasticsearch


async def _create_products(env: dict[str, str], count: int) -> None:
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
        for n in range(count):
            await app.commands.execute(
                c.CreateProduct(sku=f"RB-{n}", name="Rebuilt", price=1, currency="EUR"),
                actor=SYSTEM,
            )
    finally:
        await app.stop()


def test_a_piped_rebuild_reports_progress_in_whole_lines(
    elasticsearch_url: str, tmp_path: Path
) -> None:
    env = serve_env(elasticsearch_url, tmp_path)
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    try:
        asyncio.run(_create_products(env, 3))
        done = subprocess.run(
            [BIN / "bicameral", "readmodel", "rebuild", "products"],
            env={**env, "LOG_LEVEL": "info"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout
    lines = done.stdout.splitlines()
    assert "products: 3/3 documents (100%)" in "\n".join(lines)
    assert re.fullmatch(r"products: 3 documents in [\d.]+s; now serving \S+ \(was \S+\)", lines[-1])
