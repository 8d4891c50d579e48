"""The Long scalar: whole numbers JavaScript holds exactly, never a silent rounding."""

from __future__ import annotations

import pytest
from graphql import BooleanValueNode, FloatValueNode, IntValueNode, StringValueNode

from api.types import _long, _long_literal
from domain.rules import MAX_SAFE_INTEGER


@pytest.mark.parametrize(
    "value", [0, -1, 2**31, 2 * (2**31 - 1), MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]
)
def test_a_long_goes_out_as_the_same_whole_number(value: int) -> None:
    assert _long(value) == value


@pytest.mark.parametrize(
    "value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, True, 1.5, None, "12a", "1e3", ""]
)
def test_what_javascript_could_not_hold_exactly_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="Long cannot represent"):
        _long(value)


def test_a_long_is_read_from_an_integer_or_a_string_of_digits() -> None:
    assert _long("9007199254740991") == MAX_SAFE_INTEGER
    assert _long("-42") == -42
    assert _long_literal(IntValueNode(value="4294967294")) == 4294967294
    assert _long_literal(StringValueNode(value="7")) == 7


@pytest.mark.parametrize(
    "node", [FloatValueNode(value="1.0"), BooleanValueNode(value=True)], ids=["float", "bool"]
)
def test_a_literal_that_is_not_a_whole_number_is_refused(node: object) -> None:
    with pytest.raises(ValueError):
        _long_literal(node)  # type: ignore[arg-type]
