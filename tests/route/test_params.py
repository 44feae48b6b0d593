"""The door's strict-JSON check: its fast path (exact built-in types, no field names) never
passes a value the naming walk refuses, and the error is the walk's, naming the field."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.errors import InputError
from nowait.limits import NESTING_MAX_DEPTH
from nowait.route.params import INT_LIMIT, _check_json_values, check_json_values


class Label(str):
    pass


class Colour(enum.Enum):
    RED = "red"


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(INT_LIMIT * 2), INT_LIMIT * 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),  # lone surrogates included
    st.builds(Label, st.text(max_size=5)),
    st.just(Colour.RED),
    st.just(b"bytes"),
)
KEYS = st.one_of(st.text(max_size=8), st.integers(0, 3), st.builds(Label, st.text(max_size=3)))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=20,
)


def walk_error(value: Any) -> str | None:
    try:
        _check_json_values(value, "params")
    except InputError as exc:
        return str(exc)
    return None


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_fast_path_refuses_what_the_walk_refuses_with_the_same_error(value: Any) -> None:
    try:
        check_json_values(value, "params")
        error = None
    except InputError as exc:
        error = str(exc)
    assert error == walk_error(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": [1, {"b": float("nan")}]}, "params.a.1.b"),
        ({"a": "ok\ud800"}, "params.a"),
        ({"a": 2**63}, "params.a"),
        ({1: "x"}, "params"),
        ({"a": (1, b"x")}, "params.a.1"),
        ({"x\udc00": 1}, "params.'x\\udc00'"),
    ],
)
def test_a_bad_value_is_named_by_its_field(value: Any, field: str) -> None:
    with pytest.raises(InputError) as refused:
        check_json_values(value, "params")
    assert refused.value.field == field


def test_nesting_is_bounded_on_both_paths() -> None:
    deep: Any = "leaf"
    for _ in range(NESTING_MAX_DEPTH):
        deep = [deep]
    check_json_values(deep, "params")  # at the bound: accepted
    with pytest.raises(InputError, match="nested deeper"):
        check_json_values([deep], "params")
