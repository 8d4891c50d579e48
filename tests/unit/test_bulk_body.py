"""The bulk body readmodel/bulk.py sends: the JSON the client's own serializer wrote."""

from __future__ import annotations

from typing import Any

from elasticsearch.serializer import NdjsonSerializer

from readmodel.bulk import _ndjson, _operations, _Target
from readmodel.documents import product_document
from readmodel.projections import DeleteDocument, IndexDocument


def _pending(document: dict[str, Any]) -> list[tuple[_Target, Any]]:
    index, delete = IndexDocument("p-1", 7, document), DeleteDocument("p-2", 8)
    return [
        (_Target("products", optional=False), index),
        (_Target("products-next", optional=True), index),
        (_Target("products", optional=False), delete),
    ]


def _product(name: str) -> dict[str, Any]:
    return dict(
        product_document(
            id="p-1",
            version=3,
            sku="SKU-1",
            name=name,
            description="Ein Wasserkocher, 1,7 l — für Tee",
            category="kitchen",
            tags=["steel", "tea"],
            price=3490,
            currency="EUR",
            status="ACTIVE",
            created_at=None,
            updated_at=None,
            stock_version=2,
            on_hand=5,
            reserved=1,
            units_sold=0,
        )
    )


def test_the_body_is_the_json_the_clients_serializer_writes() -> None:
    operations = _operations(_pending(_product("Wasserkocher «Stahl» 😀")))
    body = _ndjson(operations)
    assert isinstance(body, bytes)
    assert body == NdjsonSerializer().dumps(operations)
    assert body.endswith(b"\n") and body.count(b"\n") == 5


def test_what_orjson_refuses_goes_as_the_list_the_client_serializes() -> None:
    for name in ("lone \ud800 surrogate",):
        operations = _operations(_pending(_product(name)))
        assert _ndjson(operations) is operations
    huge = _operations(_pending({**_product("x"), "units_sold": 2**70}))
    assert _ndjson(huge) is huge
