"""``WORKBENCH_LOCAL_LATENCY_MS``: the local provider sleeps that long per call, answer unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from core.agents.contracts import CitedFact, VerifierInput, VerifierOutput
from core.providers.base import ProviderRequest, ProviderResult
from core.providers.local import LocalProvider
from core.settings import reset_settings


@pytest.fixture
def settings_reset() -> Iterator[None]:
    yield
    reset_settings()  # monkeypatch has restored the environment by the time this runs again


def _request() -> ProviderRequest:
    payload = VerifierInput(
        sentence="Biochar reduced nitrate leaching by 23% in sandy soils.",
        facts=[CitedFact(id="F1", text="In sandy soils, biochar reduced cumulative nitrate leaching by 23%.")],
        cited=["F1"],
    )
    return ProviderRequest(
        agent="verifier", model="local-verifier-1", prompt="judge", payload=payload, output_type=VerifierOutput
    )


def _timed_call(monkeypatch: pytest.MonkeyPatch, latency_ms: str) -> tuple[float, ProviderResult]:
    monkeypatch.setenv("WORKBENCH_LOCAL_LATENCY_MS", latency_ms)
    reset_settings()
    started = time.perf_counter()
    result = LocalProvider().complete(_request())
    return time.perf_counter() - started, result


def test_a_call_takes_at_least_the_configured_latency(monkeypatch: pytest.MonkeyPatch, settings_reset: None) -> None:
    _, plain = _timed_call(monkeypatch, "0")
    elapsed, slowed = _timed_call(monkeypatch, "120")
    assert elapsed >= 0.120
    assert slowed == plain  # only slower, never different
