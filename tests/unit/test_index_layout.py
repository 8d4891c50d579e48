"""An index's layout (shards, replicas, refresh interval) is not its definition."""

from __future__ import annotations

from readmodel.indexes import INDEXES, PRODUCTS, IndexLayout


def test_a_layout_changes_neither_the_mapping_nor_the_digest() -> None:
    laid_out = PRODUCTS.laid_out(IndexLayout(shards=6, replicas=2, refresh_interval="30s"))

    assert laid_out.digest == PRODUCTS.digest
    assert laid_out.mappings == PRODUCTS.mappings
    assert laid_out.physical("p", 3) == PRODUCTS.physical("p", 3)


def test_the_digests_of_indexes_in_service_stay_what_they_were() -> None:
    # Digests of the mappings before the layout became settings: a change here makes
    # every deployment's `readmodel status` ask for a rebuild.
    assert {name: index.digest for name, index in INDEXES.items()} == {
        "products": "131a4c7941",
        "orders": "73e1d9aa6d",
        "customers": "5d258405f5",
    }


def test_an_index_is_created_with_the_whole_layout() -> None:
    layout = IndexLayout(shards=3, replicas=1, refresh_interval="5s")

    assert PRODUCTS.laid_out(layout).settings == {
        "number_of_shards": 3,
        "number_of_replicas": 1,
        "refresh_interval": "5s",
    }


def test_by_default_an_index_is_created_with_one_shard_and_elasticsearchs_refresh() -> None:
    assert PRODUCTS.settings == {"number_of_shards": 1, "number_of_replicas": 0}


def test_a_live_index_without_a_refresh_interval_gets_elasticsearchs_default_back() -> None:
    assert IndexLayout(replicas=1).dynamic == {"number_of_replicas": 1, "refresh_interval": None}
