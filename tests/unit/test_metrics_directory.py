"""`bicameral serve` with several processes gives their metrics a fresh directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli import _metrics_directory
from api.settings import Settings


@pytest.fixture
def environment() -> Iterator[None]:
    """PROMETHEUS_MULTIPROC_DIR as it was: left set, it would switch this test
    process's /metrics to read a directory."""
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if before is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = before


def test_one_process_keeps_its_metrics_in_memory(tmp_path: Path, environment: None) -> None:
    assert _metrics_directory(Settings(data_dir=tmp_path), 1) is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_several_processes_get_data_dir_metrics_emptied_of_an_earlier_run(
    tmp_path: Path, environment: None
) -> None:
    stale = tmp_path / "metrics" / "histogram_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"earlier")

    directory = _metrics_directory(Settings(data_dir=tmp_path), 4)

    assert directory == tmp_path / "metrics"
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
    assert list(directory.iterdir()) == []


def test_a_directory_the_operator_names_is_used_and_emptied(
    tmp_path: Path, environment: None
) -> None:
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    (chosen / "counter_9.db").write_bytes(b"earlier")
    (chosen / "notes.txt").write_text("not ours: kept")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(chosen)

    assert _metrics_directory(Settings(data_dir=tmp_path), 1) == chosen
    assert [p.name for p in chosen.iterdir()] == ["notes.txt"]
