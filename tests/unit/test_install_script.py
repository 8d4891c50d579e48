"""tools/install.sh decides what is missing from what is on the PATH; here on a PATH of
stand-ins, as a user who is not root and has no sudo, so nothing is ever installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "install.sh"


def _stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH with what the script itself runs, Python with ensurepip, a Java 17,
    Maven, make, and an `id` that says uid 1000; no sudo, no node, no npm."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "sed", "head", "dirname"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run tools/install.sh"
        (folder / tool).symlink_to(found)
    (folder / "python3").symlink_to(sys.executable)
    _stand_in(folder, "id", "echo 1000")
    _stand_in(folder, "java", "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2")
    for tool in ("mvn", "make"):
        _stand_in(folder, tool, "exit 0")
    return folder


def _run(bin_dir: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT), purpose],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_root_or_sudo_it_prints_the_command_that_installs_what_is_missing(
    bin_dir: Path,
) -> None:
    result = _run(bin_dir, "run")
    assert result.returncode == 1
    assert "apt-get install -y --no-install-recommends nodejs npm" in result.stderr
    assert "Neither root nor sudo" in result.stderr


def test_with_everything_present_it_does_nothing_and_says_nothing(bin_dir: Path) -> None:
    for tool in ("node", "npm"):
        _stand_in(bin_dir, tool, "exit 0")
    result = _run(bin_dir, "run")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_java_older_than_17_is_replaced(bin_dir: Path) -> None:
    for tool in ("node", "npm"):
        _stand_in(bin_dir, tool, "exit 0")
    _stand_in(bin_dir, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2")
    result = _run(bin_dir, "run")
    assert result.returncode == 1
    assert "--no-install-recommends openjdk-17-jre-headless" in result.stderr


def test_it_refuses_a_purpose_it_does_not_know(bin_dir: Path) -> None:
    result = _run(bin_dir, "deploy")
    assert result.returncode == 2
    assert "usage" in result.stderr
