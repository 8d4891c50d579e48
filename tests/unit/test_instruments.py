"""Request metrics' labels stay bounded whatever operation names clients send."""

from __future__ import annotations

import pytest
from graphql import parse

from api import instruments


def test_operation_names_past_the_bound_share_one_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instruments, "_names", set())
    labels = {
        instruments.operation_label(parse(f"query Q{n} {{ a }}"), None)
        for n in range(instruments.MAX_OPERATION_NAMES + 50)
    }

    assert len(labels) == instruments.MAX_OPERATION_NAMES + 1
    assert "(other)" in labels
    assert instruments.operation_label(parse("query Q0 { a }"), "Q0") == "Q0"


@pytest.mark.parametrize(
    ("document", "name", "label"),
    [
        ("{ a }", None, "(anonymous)"),
        ("query A { a } query B { a }", None, "(unknown)"),
        ("query A { a }", "Nope", "(unknown)"),
        ("query A { a } query B { a }", "B", "B"),
    ],
)
def test_an_operation_is_labelled_by_a_name_its_document_declares(
    document: str, name: str | None, label: str
) -> None:
    assert instruments.operation_label(parse(document), name) == label


def test_an_unparsed_document_is_labelled_unknown() -> None:
    assert instruments.operation_label(None, "Anything") == "(unknown)"
