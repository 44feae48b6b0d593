"""The Models API and the list cursors of the emulator, driven by the official SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from nowait.clock import FakeClock
from nowait.emulator import EmulatorConfig, EmulatorServer, Turnaround
from nowait.emulator.config import KNOWN_MODELS
from nowait.emulator.models import CATALOGUE_ORDER

MODEL = "claude-sonnet-5-5"
SDK_DEPRECATED = {  # anthropic 2.13's _data.deprecated_models.DEPRECATED_MODELS, keys
    "claude-mythos-preview",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
}


def one_request() -> list[dict[str, Any]]:
    params = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return [{"custom_id": "r", "params": params}]


# ---- models -----------------------------------------------------------------------------------
def test_models_list_every_known_model_in_catalogue_order(
    sdk_for: Any, emulator_server: Any
) -> None:
    sdk = sdk_for(emulator_server)  # strict: every field must match ModelInfo
    listed = [m.id for m in sdk.models.list(limit=5)]  # auto-pagination across 5 pages
    assert listed == [m for m in CATALOGUE_ORDER if m in KNOWN_MODELS]
    assert set(listed) == KNOWN_MODELS
    first = sdk.models.list(limit=3)
    assert first.has_more and first.first_id == listed[0] and first.last_id == listed[2]
    last = sdk.models.list(after_id=listed[-3], limit=5)
    assert [m.id for m in last.data] == listed[-2:] and not last.has_more
    before = sdk.models.list(before_id=listed[3], limit=2)
    assert [m.id for m in before.data] == listed[1:3] and before.has_more


def test_a_model_has_the_apis_shape(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server)
    fable = sdk.models.retrieve("claude-fable-5-2")
    assert fable.type == "model" and fable.id == "claude-fable-5-2"
    assert fable.display_name == "Claude Fable 5.2"
    assert fable.created_at.isoformat().startswith("2026-11-09")
    assert fable.lifecycle == "active" and fable.line == "fable"
    assert fable.max_input_tokens == 1_000_000 and fable.max_tokens == 128_000
    sonnet = sdk.models.retrieve("claude-sonnet-4-5-20250929")
    assert sonnet.display_name == "Claude Sonnet 4.5"
    assert sonnet.lifecycle == "deprecated" and sonnet.retires_at is not None
    beta = sdk.beta.models.retrieve("claude-haiku-5-5")
    assert beta.id == "claude-haiku-5-5" and beta.display_name == "Claude Haiku 5.5"
    assert [m.id for m in sdk.beta.models.list()] == [m.id for m in sdk.models.list()]


def test_lifecycle_filter(sdk_for: Any, emulator_server: Any) -> None:
    sdk = sdk_for(emulator_server, max_retries=0)
    deprecated = {m.id for m in sdk.models.list(lifecycle=["deprecated"])}
    assert deprecated == SDK_DEPRECATED
    active = {m.id for m in sdk.models.list(lifecycle=["active"])}
    assert active == KNOWN_MODELS - SDK_DEPRECATED
    assert list(sdk.models.list(lifecycle=["retired"])) == []
    with pytest.raises(anthropic.BadRequestError, match="lifecycle"):
        sdk.models.list(lifecycle=["gone"])  # type: ignore[list-item]


def test_unknown_model_is_404_except_in_contract_mode(sdk_for: Any, fake_clock: FakeClock) -> None:
    with EmulatorServer(clock=fake_clock) as server:
        sdk = sdk_for(server, max_retries=0)
        with pytest.raises(anthropic.NotFoundError, match="claude-imaginary-9"):
            sdk.models.retrieve("claude-imaginary-9")
        with pytest.raises(anthropic.BadRequestError, match="after_id"):
            sdk.models.list(after_id="made-up")
    with EmulatorServer(EmulatorConfig(contract_mode=True), fake_clock) as server:
        sdk = sdk_for(server)
        anything = sdk.models.retrieve("model_id")
        assert anything.id == "model_id" and anything.type == "model"
        assert sdk.beta.models.retrieve("model_id").id == "model_id"
        page = sdk.models.list(after_id="after_id", before_id="before_id", limit=1)
        assert len(page.data) == 1  # made-up cursors bound nothing


# ---- batch list cursors ---------------------------------------------------------------------
@pytest.fixture
def five_batches(sdk_for: Any, fake_clock: FakeClock) -> Any:
    config = EmulatorConfig(turnaround=Turnaround(3600), contract_mode=False)
    with EmulatorServer(config, fake_clock) as server:
        sdk = sdk_for(server, max_retries=0)
        created = []
        for _ in range(5):
            created.append(sdk.messages.batches.create(requests=one_request()).id)
            fake_clock.advance(1)
        yield sdk, created[::-1]  # listed newest first


def test_both_cursors_bound_a_window_paged_from_before_id(five_batches: Any) -> None:
    sdk, listed = five_batches
    page = sdk.messages.batches.list(after_id=listed[0], before_id=listed[4], limit=2)
    assert [b.id for b in page.data] == listed[2:4] and page.has_more
    # The SDK pages on with before_id=first_id and the same after_id: it stops at after_id.
    assert sorted(
        b.id for b in sdk.messages.batches.list(after_id=listed[0], before_id=listed[4], limit=2)
    ) == sorted(listed[1:4])
    empty = sdk.messages.batches.list(after_id=listed[3], before_id=listed[1])
    assert empty.data == [] and not empty.has_more and empty.first_id is None


def test_cursors_naming_no_batch_are_a_400_in_faithful_mode(five_batches: Any) -> None:
    sdk, _ = five_batches
    for cursor in ({"after_id": "msgbatch_nope"}, {"before_id": "msgbatch_nope"}):
        with pytest.raises(anthropic.BadRequestError, match="no object found"):
            sdk.messages.batches.list(**cursor)


def test_contract_mode_accepts_any_cursor(sdk_for: Any, fake_clock: FakeClock) -> None:
    with EmulatorServer(EmulatorConfig(contract_mode=True), fake_clock) as server:
        sdk = sdk_for(server)
        ids = [sdk.messages.batches.create(requests=one_request()).id for _ in range(3)]
        page = sdk.messages.batches.list(after_id="after_id", before_id="before_id", limit=1)
        assert len(page.data) == 1 and page.has_more
        assert {b.id for b in sdk.messages.batches.list(after_id="made-up")} == set(ids)
        after_first = sdk.messages.batches.list(after_id=ids[2], before_id="made-up")
        assert {b.id for b in after_first.data} == set(ids[:2])  # a known cursor still bounds


@pytest.mark.parametrize("limit", ["²", "٣", "0", "1001", "-1", "1.5", "", "x", "9" * 30])
def test_a_bad_limit_is_a_400(sdk_for: Any, emulator_server: Any, limit: str) -> None:
    sdk = sdk_for(emulator_server, max_retries=0)
    for path in ("/v1/messages/batches", "/v1/models"):
        with pytest.raises(anthropic.BadRequestError, match="limit"):
            sdk.get(path, cast_to=object, options={"params": {"limit": limit}})
