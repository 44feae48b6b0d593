"""The public API is what `nowait.__all__` says, and every name in it exists."""

from __future__ import annotations

import nowait


def test_all_names_exist_and_are_sorted() -> None:
    for name in nowait.__all__:
        assert hasattr(nowait, name), name
    assert list(nowait.__all__) == sorted(nowait.__all__)


def test_the_package_ships_type_information() -> None:
    from importlib import resources

    assert resources.files("nowait").joinpath("py.typed").is_file()
