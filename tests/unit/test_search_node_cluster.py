"""The configuration tools/search_node.py writes for a cluster's nodes (no process runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import search_node
from tools.search_node import _Cluster, _Node, _settings


def _parsed(text: str) -> dict[str, object]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {key: json.loads(value) for key, value in (line.split(": ", 1) for line in lines)}


def test_a_single_node_discovers_no_one() -> None:
    written = _parsed(_settings(_Node.at(9250, Path("/tmp/x"))))

    assert written["discovery.type"] == "single-node"
    assert "discovery.seed_hosts" not in written


def test_a_cluster_node_knows_every_node_by_its_fixed_transport_port(tmp_path: Path) -> None:
    cluster = _Cluster((9270, 9271, 9272))

    written = _parsed(_settings(_Node.at(9271, tmp_path), cluster))

    assert "discovery.type" not in written
    assert written["http.port"] == 9271
    assert written["transport.port"] == 9271 + search_node.TRANSPORT_OFFSET
    assert written["discovery.seed_hosts"] == [
        "127.0.0.1:9370",
        "127.0.0.1:9371",
        "127.0.0.1:9372",
    ]
    assert written["cluster.initial_master_nodes"] == [
        "bicameral-9270",
        "bicameral-9271",
        "bicameral-9272",
    ]


def test_a_node_that_has_joined_its_cluster_is_not_told_to_form_one_again(
    tmp_path: Path,
) -> None:
    node = _Node.at(9270, tmp_path)
    node.root.mkdir(parents=True)
    (node.root / "cluster.joined").touch()

    written = _parsed(_settings(node, _Cluster((9270, 9271, 9272))))

    assert "cluster.initial_master_nodes" not in written
    assert written["discovery.seed_hosts"]


def test_a_node_whose_first_start_failed_halfway_is_still_told_to_form_the_cluster(
    tmp_path: Path,
) -> None:
    node = _Node.at(9270, tmp_path)
    (node.data / "_state").mkdir(parents=True)  # what a node writes before the cluster forms

    written = _parsed(_settings(node, _Cluster((9270, 9271, 9272))))

    assert written["cluster.initial_master_nodes"] == [
        "bicameral-9270",
        "bicameral-9271",
        "bicameral-9272",
    ]


def test_status_of_a_cluster_with_no_node_running_exits_3_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = search_node.main(["status", "--nodes", "3", "--port", "1", "--data-dir", str(tmp_path)])

    assert code == 3
    assert "no nodes joined" in capsys.readouterr().out


def test_a_cluster_of_no_nodes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(search_node.SearchNodeError, match="at least one node"):
        search_node.start(port=9270, data_dir=tmp_path, nodes=0)
