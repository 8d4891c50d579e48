"""The read models' index definitions, declared once with explicit types.

Each index is versioned by a digest of its mapping and settings: the physical
index is `<prefix>-<name>-<digest>` and clients only ever see the alias
`<prefix>-<name>`. A changed mapping in the code gives a new digest, which is
how `bicameral readmodel status` knows a rebuild is due.

Only what the bare integ-test distribution has (see docs/elasticsearch.md):
the `standard` analyzer, keyword, numeric, date, boolean and `completion`
fields. Case-insensitive sorting uses a lower-cased keyword filled in by the
projection rather than a normalizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CUSTOMERS", "INDEXES", "ORDERS", "PRODUCTS", "IndexDefinition"]

_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}
_LONG = {"type": "long"}
_INT = {"type": "integer"}
_TEXT = {"type": "text", "analyzer": "standard"}


@dataclass(frozen=True)
class IndexDefinition:
    name: str
    properties: dict[str, Any]
    settings: dict[str, Any] = field(
        default_factory=lambda: {"number_of_shards": 1, "number_of_replicas": 0}
    )

    @property
    def mappings(self) -> dict[str, Any]:
        # strict: a field the projection forgot to declare is an error, not a guess.
        return {"dynamic": "strict", "properties": self.properties}

    @property
    def digest(self) -> str:
        body = json.dumps({"m": self.mappings, "s": self.settings}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:10]

    def alias(self, prefix: str) -> str:
        return f"{prefix}-{self.name}"

    def physical(self, prefix: str, digest: str | None = None) -> str:
        return f"{prefix}-{self.name}-{digest or self.digest}"


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
        "tags": _KEYWORD,
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
