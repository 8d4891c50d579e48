"""How a read model's partitions are split and shared (readmodel/partitions.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from readmodel.partitions import Lease, partition_of, plan, read_model_of, slot_names

NOW = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
LIVE = NOW + timedelta(seconds=10)
GONE = NOW - timedelta(seconds=1)


def _rows(*owners: str | None, until: datetime = LIVE) -> list[Lease]:
    return [
        Lease(name, owner, None if owner is None else until)
        for name, owner in zip(slot_names("products", len(owners)), owners, strict=True)
    ]


def test_an_aggregate_lands_in_the_same_partition_in_every_process() -> None:
    ids = [f"prod-{n}" for n in range(50)]
    here = [partition_of(i, 4) for i in ids]
    # Another interpreter (another hash seed) computes the same partitions.
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "from readmodel.partitions import partition_of;"
            f"print([partition_of(i, 4) for i in {ids!r}])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": "."},
    ).stdout.strip()
    assert str(here) == there
    assert set(here) == {0, 1, 2, 3}  # they spread over every partition


def test_rows_are_named_by_read_model_partition_and_count() -> None:
    assert slot_names("orders", 2) == ["orders:0/2", "orders:1/2"]
    assert read_model_of("orders:1/2") == "orders" == read_model_of("orders")


def test_a_lone_worker_takes_every_free_partition() -> None:
    decided = plan(_rows(None, None, None, None), "a", NOW, [], None)
    assert decided.claim == slot_names("products", 4)
    assert decided.share == 4


def test_a_second_worker_registered_makes_the_first_give_back_half() -> None:
    decided = plan(_rows("a", "a", "a", "a"), "a", NOW, ["b"], None)
    assert (len(decided.keep), len(decided.give_back), decided.share) == (2, 2, 2)
    # And the newcomer claims what was given back, up to its share.
    after = plan(_rows("a", "a", None, None), "b", NOW, ["a"], None)
    assert after.claim == slot_names("products", 4)[2:]


def test_four_workers_share_four_partitions_one_each() -> None:
    rows = _rows("a", "a", "b", None)
    assert plan(rows, "a", NOW, ["b", "c", "d"], None).give_back == ["products:1/4"]
    assert len(plan(rows, "c", NOW, ["a", "b", "d"], None).claim) == 1


def test_nothing_is_given_back_when_nobody_is_short() -> None:
    # Three workers on four partitions: 2, 1, 1 is as fair as it gets.
    decided = plan(_rows("a", "a", "b", "c"), "a", NOW, ["b", "c"], None)
    assert decided.give_back == []


def test_expired_partitions_are_all_taken_whatever_the_share() -> None:
    rows = _rows("dead", "dead", "b", "b")
    rows[0] = Lease(rows[0].name, "dead", GONE)
    rows[1] = Lease(rows[1].name, "dead", GONE)
    decided = plan(rows, "a", NOW, ["b"], None)
    assert decided.claim == ["products:0/4", "products:1/4"]


def test_a_live_lease_whose_lock_nobody_holds_is_orphaned_on_postgresql() -> None:
    rows = _rows("dead", "dead", "b", "b")
    locked = {"products:2/4", "products:3/4"}  # b's; the dead worker's locks went with it
    decided = plan(rows, "a", NOW, ["b"], locked)
    assert decided.orphans == [("products:0/4", "dead"), ("products:1/4", "dead")]
    # Without locks (SQLite) a live lease is never taken.
    assert plan(rows, "a", NOW, ["b"], None).orphans == []
