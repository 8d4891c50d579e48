"""Index names, digests and what makes a rebuild due: no Elasticsearch needed."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from readmodel.indexes import INDEXES, PRODUCTS
from readmodel.setup import AliasState, generation_of


def test_the_digest_is_stored_in_the_mapping_and_does_not_depend_on_it() -> None:
    for index in INDEXES.values():
        assert index.mappings["_meta"] == {"digest": index.digest}
        assert index.mappings["dynamic"] == "strict"
    # Computed without `_meta`, as before it was stored: existing indexes keep their digest.
    before = {"m": {"dynamic": "strict", "properties": PRODUCTS.properties}, "s": PRODUCTS.settings}
    body = json.dumps(before, sort_keys=True).encode()
    assert PRODUCTS.digest == hashlib.sha256(body).hexdigest()[:10]


def test_a_changed_mapping_gives_a_new_digest() -> None:
    changed = dataclasses.replace(
        PRODUCTS, properties={**PRODUCTS.properties, "brand": {"type": "keyword"}}
    )
    assert changed.digest != PRODUCTS.digest


def test_physical_names_carry_digest_and_generation_and_never_clash_with_next() -> None:
    assert PRODUCTS.physical("p", 3) == f"p-products-{PRODUCTS.digest}-3"
    assert PRODUCTS.next_alias("p") == "p-products-next"
    assert generation_of("p-products", PRODUCTS.physical("p", 12)) == 12
    assert generation_of("p-products", f"p-products-{PRODUCTS.digest}") == 0  # before generations
    assert generation_of("p-products", "p-products-next") == 0
    assert generation_of("p-products", f"p-products-x-{PRODUCTS.digest}-4") == 0  # another alias's


def test_a_rebuild_is_due_when_the_serving_digest_differs_from_the_codes() -> None:
    def state(serving: str | None, digest: str | None) -> AliasState:
        return AliasState("p-products", serving, digest, PRODUCTS.digest)

    assert not state(None, None).rebuild_due
    assert not state(PRODUCTS.physical("p", 7), PRODUCTS.digest).rebuild_due
    assert state("p-products-0123456789-1", "0123456789").rebuild_due
    assert state("p-products", None).rebuild_due  # a concrete index where the alias should be
