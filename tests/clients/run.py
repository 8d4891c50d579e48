"""Runs a real JavaScript client (a node script in this folder) from a pytest test.

The scripts take one JSON argument (what the test tells them: the server's URL,
a token...) and print one JSON value on their last line of output, which
`run_node` returns. A script that exits non-zero, prints no JSON, or runs past
its timeout fails the test with its output. So does a machine without node or
without this folder's packages: the test fails loudly, it is never skipped
(`make test` runs `npm ci` here; `.ci/run` installs Debian's nodejs and npm).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CLIENTS", "run_node"]

CLIENTS = Path(__file__).resolve().parent


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: these tests drive real JavaScript clients "
            "(install Debian's nodejs and npm, as .ci/run does)",
            pytrace=False,
        )
    if not (CLIENTS / "node_modules").is_dir():
        pytest.fail(
            f"{CLIENTS} has no node_modules: run `npm ci` there (`make test` does)",
            pytrace=False,
        )
    return node


def run_node(script: str, arguments: Mapping[str, Any], *, timeout: float = 120) -> Any:
    """Run `node tests/clients/<script> '<arguments as JSON>'` and return the JSON
    value it printed last."""
    command = [_node(), str(CLIENTS / script), json.dumps(dict(arguments))]
    try:
        done = subprocess.run(
            command, cwd=CLIENTS, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"node {script} did not finish in {timeout:g} s:\n{expired.stdout!s}")
    said = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    if done.returncode != 0:
        pytest.fail(f"node {script} exited with {done.returncode}\n{said}")
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"node {script} printed no JSON on its last line\n{said}")
