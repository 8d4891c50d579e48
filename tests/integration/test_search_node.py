"""tools/search_node.py against a real node.

The node on port 9250 is the one the rest of the suite uses, so these tests
start it if needed and leave it running.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tools import search_node

pytestmark = pytest.mark.elasticsearch

PORT = 9250
DATA_DIR = search_node.REPO_ROOT / ".data" / "test"


@pytest.fixture(scope="module")
def url() -> str:
    return search_node.ensure_running(PORT, DATA_DIR)


def test_starting_a_running_node_again_returns_the_same_node(url: str) -> None:
    before = search_node.status(PORT, DATA_DIR)

    assert search_node.ensure_running(PORT, DATA_DIR) == url
    assert search_node.start(port=PORT, data_dir=DATA_DIR) == url

    assert search_node.status(PORT, DATA_DIR)["pid"] == before["pid"]


def test_status_reports_a_healthy_node_of_the_pinned_version(url: str) -> None:
    state = search_node.status(PORT, DATA_DIR)

    assert state["running"] is True
    assert state["url"] == url == f"http://127.0.0.1:{PORT}"
    assert state["version"] == search_node.DEFAULT_VERSION
    assert state["health"] in ("green", "yellow")
    # None when the node on the port was started from another folder (another checkout).
    assert state["pid"] is None or isinstance(state["pid"], int)


def test_the_node_keeps_its_files_under_the_data_folder(url: str) -> None:
    folder = Path(search_node.status(PORT, DATA_DIR)["folder"])

    # <data dir>/es-9250, or under /var/lib/bicameral when root runs from a folder
    # the node's unprivileged user cannot enter (a checkout under /root).
    assert folder == search_node.node_folder(DATA_DIR.resolve(), PORT)
    assert folder.name == f"es-{PORT}"
    assert (folder / "config" / "elasticsearch.yml").is_file()
    assert search_node.logs(PORT, DATA_DIR, lines=5)


def test_status_of_a_port_without_a_node_says_it_is_not_running(tmp_path: Path) -> None:
    state = search_node.status(1, tmp_path)

    assert state == state | {"running": False, "pid": None, "version": None, "health": None}


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ([sys.executable, "-m", "tools.search_node"], "usage: python -m tools.search_node"),
        (
            [str(Path(sys.executable).parent / "bicameral"), "search-node"],
            "usage: bicameral search-node",
        ),
    ],
)
def test_help_names_the_command_it_was_run_as_and_starts_nothing(
    command: list[str], usage: str
) -> None:
    ran = subprocess.run(
        [*command, "--help"],
        cwd=search_node.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(usage)
    assert "{start,stop,status,logs}" in ran.stdout
