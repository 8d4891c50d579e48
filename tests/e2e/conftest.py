"""The running service, as `bicameral serve` starts it: a real process on a real port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]
    log: Path


@pytest.fixture
def server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bicameral migrate` then `bicameral serve` on SQLite with its embedded worker."""
    port = _free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": "",
        "ELASTICSEARCH_URL": elasticsearch_url,
        "INDEX_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
        "PORT": str(port),
        "FEED_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
    }
    subprocess.run([BIN / "bicameral", "migrate"], env=env, check=True, capture_output=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([BIN / "bicameral", "serve"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"bicameral serve exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bicameral serve did not answer in 30 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(url, env, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        httpx.delete(f"{elasticsearch_url}/{env['INDEX_PREFIX']}-*", timeout=10)
