"""Run one of tests/clients/*.mjs (a real JavaScript client) under node and
hand back the JSON it prints last. Node and npm are required, not optional:
without them the test fails and says so, it never skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CLIENTS", "run_node_script"]

CLIENTS = Path(__file__).resolve().parent


def _installed() -> None:
    """The pinned packages of package-lock.json in node_modules (`npm ci` once)."""
    if (CLIENTS / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: the JavaScript client tests need node and npm")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci in tests/clients failed:\n{done.stderr[-3000:]}")


def run_node_script(script: str, env: dict[str, str], timeout: float = 120) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the JavaScript client tests need node and npm")
    _installed()
    try:
        done = subprocess.run(
            [node, str(CLIENTS / script)],
            cwd=CLIENTS,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"{script} did not finish in {timeout} s:\n{hung.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"{script} exited {done.returncode}:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"{script} printed nothing:\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])
