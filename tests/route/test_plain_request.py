"""The door's fast path for the common request shape (`plain_request`): what it passes, the
full checks (the strict-JSON walk and the SDK's own type, pydantic) pass too; what it does not
pass goes through those checks, so every error names its field as before."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowait.errors import InputError
from nowait.route.backend import check_params, plain_request
from nowait.route.params import INT_LIMIT, check_json_values
from nowait.route.router import check_request

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(INT_LIMIT * 2), INT_LIMIT * 2),
    st.floats(allow_nan=True),
    st.text(max_size=6),  # lone surrogates included
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
PLAIN = st.fixed_dictionaries(
    {
        "model": st.text(max_size=12),
        "max_tokens": st.integers(1, 64),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=12)}
            ),
            max_size=3,
        ),
    },
    optional={"system": st.text(max_size=12)},
)


@st.composite
def near_plain(draw: st.DrawFn) -> dict[str, Any]:
    """A request of the common shape with one spot changed: a value replaced by any value, or
    a key added, at the top or in a message."""
    params: dict[str, Any] = draw(PLAIN)
    spots: list[dict[str, Any]] = [params, *params["messages"]]
    where = draw(st.sampled_from(spots))
    key = draw(st.one_of(st.sampled_from(sorted(where)), st.text(max_size=8)))
    where[key] = draw(ANY_VALUE)
    return params


def full_checks(params: dict[str, Any]) -> None:
    check_json_values(params, "params")
    check_params(params)


@settings(max_examples=600, deadline=None)
@given(st.one_of(PLAIN, near_plain()))
def test_what_the_fast_path_passes_the_full_checks_pass(params: dict[str, Any]) -> None:
    if plain_request(params):
        full_checks(params)  # raises if the fast path let a bad request through


def test_the_common_shape_takes_the_fast_path() -> None:
    params = {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "system": "Tag products. é",
        "messages": [
            {"role": "user", "content": "Tag product 1: a blue mug."},
            {"role": "assistant", "content": "mug"},
        ],
    }
    assert plain_request(params)
    assert check_request(params, key="k").max_tokens == 64


@pytest.mark.parametrize(
    ("messages", "max_tokens", "field"),
    [
        ([{"role": "user", "content": "\ud800"}], 64, "params.messages.0.content"),
        ([{"role": "user", "content": 7}], 64, "params.messages.0.content"),
        ([{"role": "user", "content": "hi"}], True, "params.max_tokens"),
        ([{"role": "user", "content": "hi"}], 2**64, "params.max_tokens"),
    ],
)
def test_a_near_common_bad_request_is_named_by_its_field(
    messages: list[Any], max_tokens: object, field: str
) -> None:
    params = {"model": "claude-haiku-5-5", "max_tokens": max_tokens, "messages": messages}
    assert not plain_request(params)
    with pytest.raises(InputError) as caught:
        check_request(params)
    assert caught.value.field == field
