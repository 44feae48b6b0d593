"""The custom_ids nowait names batch requests with stay inside the API's pattern."""

from __future__ import annotations

import pytest

from nowait.limits import CUSTOM_ID_PATTERN
from nowait.route import custom_ids


def test_a_custom_id_names_its_store_job_and_attempt() -> None:
    made = custom_ids.custom_id("abc123", 42, 3)
    assert made == "nabc123-j42-a3"
    assert CUSTOM_ID_PATTERN.fullmatch(made)
    assert custom_ids.parse(made) == custom_ids.CustomId("abc123", 42, 3)
    assert custom_ids.job_in(made, "abc123") == 42
    assert custom_ids.job_in(made, "other") is None  # another store's
    assert custom_ids.job_in("j42-a3", "abc123") is None  # a legacy one


@pytest.mark.parametrize(
    ("namespace", "job_id"),
    [("has space", 1), ("dotted.name", 1), ("a" * 40, 10**19)],  # bad characters; too long
)
def test_a_custom_id_outside_the_api_pattern_is_refused(namespace: str, job_id: int) -> None:
    with pytest.raises(ValueError, match="outside the API's pattern"):
        custom_ids.custom_id(namespace, job_id, 1)
