"""The read models' index definitions, declared once with explicit types.

Each read model is served through the alias `<prefix>-<name>`; clients only
ever see the alias. Behind it is one physical index,
`<prefix>-<name>-<digest>-<generation>`: the digest is a hash of the mapping
and settings, so a changed mapping in the code gives a new digest, which is
how `bicameral readmodel status` knows a rebuild is due; the generation is a
counter, so that a rebuild under an unchanged mapping still gets a new index.
The digest is also stored in the mapping's `_meta`, where it is read back.
While a rebuild is under way a second alias, `<prefix>-<name>-next`, points
at the index being built (see readmodel/rebuild.py).

Only what the bare integ-test distribution has (see docs/elasticsearch.md):
the `standard` analyzer, keyword, numeric, date, boolean and `completion`
fields. Case-insensitive sorting uses a lower-cased keyword filled in by the
projection rather than a normalizer.

How an index is laid out on the cluster (shards, replicas, refresh interval)
is not part of its definition but an `IndexLayout` from the settings
(ELASTICSEARCH_SHARDS, ELASTICSEARCH_REPLICAS, ELASTICSEARCH_REFRESH_INTERVAL),
and stays out of the digest: the same documents under the same mapping, on
more shards, are not an outdated read model. Replicas and the refresh interval
can change on a live index (readmodel/setup.py applies them at start); the
shard count cannot, so a new one reaches an index only when it is created, by
`bicameral readmodel rebuild` (docs/elasticsearch.md, "A cluster").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CUSTOMERS", "INDEXES", "ORDERS", "PRODUCTS", "IndexDefinition", "IndexLayout"]

_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}
_LONG = {"type": "long"}
_INT = {"type": "integer"}
_TEXT = {"type": "text", "analyzer": "standard"}


# What the digest has always hashed as the index's settings, when one shard and
# no replica were written here. Kept as it was so that no index in service is
# taken for outdated; the layout in use comes from `IndexLayout` and is not hashed.
_DIGESTED_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0}


@dataclass(frozen=True)
class IndexLayout:
    """Shards, replicas and refresh interval of the read models' indexes."""

    shards: int = 1
    replicas: int = 0
    # An Elasticsearch time value ("1s", "30s", "-1": never by itself); None: its own
    # default (1s, skipped while the index gets no searches). The feed makes what it
    # writes searchable with explicit refreshes (readmodel/feed.py), whatever this is.
    refresh_interval: str | None = None

    @property
    def dynamic(self) -> dict[str, Any]:
        """The settings a live index takes; None resets the refresh interval to the default."""
        return {"number_of_replicas": self.replicas, "refresh_interval": self.refresh_interval}

    @property
    def creation(self) -> dict[str, Any]:
        """The settings to create an index with."""
        created: dict[str, Any] = {"number_of_shards": self.shards, **self.dynamic}
        if self.refresh_interval is None:
            del created["refresh_interval"]
        return created


@dataclass(frozen=True)
class IndexDefinition:
    name: str
    properties: dict[str, Any]
    layout: IndexLayout = IndexLayout()

    def laid_out(self, layout: IndexLayout) -> IndexDefinition:
        """The same index (same mapping, same digest) under another layout."""
        return replace(self, layout=layout)

    @property
    def settings(self) -> dict[str, Any]:
        """The settings to create an index with."""
        return self.layout.creation

    @property
    def mappings(self) -> dict[str, Any]:
        """The mapping to create an index with, its digest in `_meta`."""
        return {**self._typed_mappings, "_meta": {"digest": self.digest}}

    @property
    def _typed_mappings(self) -> dict[str, Any]:
        # strict: a field the projection forgot to declare is an error, not a guess.
        return {"dynamic": "strict", "properties": self.properties}

    @property
    def digest(self) -> str:
        # Over the mapping without `_meta`: the digests of indexes made before
        # `_meta` was stored stay the same, so they are not taken for outdated.
        # Not over the layout (see _DIGESTED_SETTINGS).
        body = json.dumps({"m": self._typed_mappings, "s": _DIGESTED_SETTINGS}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:10]

    def alias(self, prefix: str) -> str:
        return f"{prefix}-{self.name}"

    def next_alias(self, prefix: str) -> str:
        """The alias of the index a rebuild is building; absent when none is under way."""
        return f"{prefix}-{self.name}-next"

    def physical(self, prefix: str, generation: int = 1) -> str:
        return f"{prefix}-{self.name}-{self.digest}-{generation}"


PRODUCTS = IndexDefinition(
    "products",
    {
        "id": _KEYWORD,
        "version": _LONG,
        "position": _LONG,
        "sku": _KEYWORD,
        "name": {**_TEXT, "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        "name_sort": _KEYWORD,
        "name_suggest": {"type": "completion", "analyzer": "standard"},
        "description": _TEXT,
        "category": _KEYWORD,
        # Keyword for facets and filters; `tags.text` lets a search word match a tag.
        "tags": {**_KEYWORD, "fields": {"text": _TEXT}},
        "price": _LONG,
        "currency": _KEYWORD,
        "status": _KEYWORD,
        "stock_version": _LONG,
        "on_hand": _INT,
        "reserved": _INT,
        "available": _INT,
        "in_stock": {"type": "boolean"},
        "units_sold": _INT,
        "created_at": _DATE,
        "updated_at": _DATE,
    },
)

ORDERS = IndexDefinition(
    "orders",
    {
        "id": _KEYWORD,
        "version": _LONG,
        "position": _LONG,
        "status": _KEYWORD,
        "currency": _KEYWORD,
        "total": _LONG,
        "placed_at": _DATE,
        "paid_at": _DATE,
        "shipped_at": _DATE,
        "cancelled_at": _DATE,
        "updated_at": _DATE,
        "customer": {
            "properties": {
                "id": _KEYWORD,
                "name": {**_TEXT, "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                "email": _KEYWORD,
                "erased": {"type": "boolean"},
            }
        },
        "lines": {
            "type": "nested",
            "properties": {
                "product_id": _KEYWORD,
                "sku": _KEYWORD,
                "product_name": _TEXT,
                "quantity": _INT,
                "unit_price": _LONG,
                "amount": _LONG,
            },
        },
        "line_count": _INT,
    },
)

CUSTOMERS = IndexDefinition(
    "customers",
    {
        "id": _KEYWORD,
        "version": _LONG,
        "position": _LONG,
        "name": {**_TEXT, "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        "name_sort": _KEYWORD,
        "email": _KEYWORD,
        "erased": {"type": "boolean"},
        "order_count": _INT,
        "total_spent": _LONG,
        "last_order_at": _DATE,
        "created_at": _DATE,
        "updated_at": _DATE,
    },
)

INDEXES: dict[str, IndexDefinition] = {d.name: d for d in (PRODUCTS, ORDERS, CUSTOMERS)}
