"""Pure rules of the gateway: what a call costs, and when and how long to wait before retrying."""

from __future__ import annotations

import logging
import random

import pytest

from core import pricing, retry
from core.settings import Settings


def settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def test_a_known_model_is_priced_with_cached_input_at_its_own_rate() -> None:
    cost = pricing.cost_of(
        "gpt-4.1-mini", input_tokens=1_000_000, output_tokens=500_000, cached_tokens=400_000, settings=settings()
    )
    # 600k fresh input at 0.40, 400k cached at 0.10, 500k output at 1.60 (USD per million).
    assert cost.pricing == "priced" and cost.usd == pytest.approx(0.24 + 0.04 + 0.80)


def test_dated_snapshots_and_latest_aliases_take_their_family_price() -> None:
    s = settings()
    assert pricing.price_for("gpt-4o-mini-2024-07-18", s) == pricing.PRICES["gpt-4o-mini"]
    assert pricing.price_for("claude-3-5-haiku-latest", s) == pricing.PRICES["claude-3-5-haiku"]
    # The longest known prefix wins: gpt-4.1-mini is not priced as gpt-4.1.
    assert pricing.price_for("gpt-4.1-mini-2025-04-14", s) == pricing.PRICES["gpt-4.1-mini"]


def test_configured_prices_override_the_table_and_add_models() -> None:
    s = settings(
        WORKBENCH_PRICING={"gpt-4.1-mini": {"input": 1.0, "output": 2.0}, "llama3:8b": {"input": 0.0, "output": 0.0}}
    )
    assert (
        pricing.cost_of("gpt-4.1-mini", input_tokens=10**6, output_tokens=10**6, cached_tokens=0, settings=s).usd == 3.0
    )
    ollama = pricing.cost_of("llama3:8b", input_tokens=500, output_tokens=500, cached_tokens=0, settings=s)
    assert ollama.usd == 0.0 and ollama.pricing == "priced"


def test_an_unknown_model_is_never_priced_at_zero_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.pricing"):
        first = pricing.cost_of(
            "mystery-model-x", input_tokens=100, output_tokens=10, cached_tokens=0, settings=settings()
        )
        pricing.cost_of("mystery-model-x", input_tokens=100, output_tokens=10, cached_tokens=0, settings=settings())
    assert first.usd is None and first.pricing == "unknown_model"
    assert [r.getMessage() for r in caplog.records].count(
        "no price for model 'mystery-model-x': its calls are recorded unpriced; add it to WORKBENCH_PRICING"
    ) == 1


def test_the_offline_models_are_free() -> None:
    assert pricing.cost_of("local-writer-1", input_tokens=9, output_tokens=9, cached_tokens=0, settings=settings()) == (
        pricing.Cost(0.0, "free")
    )


@pytest.mark.parametrize(
    ("failure_class", "attempts"),
    [("timeout", 3), ("server_error", 3), ("rate_limit", 5), ("invalid_json", 2), ("contract", 1), ("rejected", 1)],
)
def test_each_failure_class_gets_its_number_of_attempts(failure_class: str, attempts: int) -> None:
    waits = []
    retries = 0
    while (wait := retry.next_delay(failure_class, retries, rng=random.Random(1))) is not None:
        waits.append(wait)
        retries += 1
    assert retries + 1 == attempts


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for retries_done in range(2):
        ceiling = 0.5 * 2**retries_done
        samples = [retry.next_delay("timeout", retries_done, rng=rng) for _ in range(200)]
        assert all(s is not None and 0 <= s <= ceiling for s in samples)
        assert max(s for s in samples if s is not None) > ceiling * 0.8  # spread over the range, not fixed
    assert retry.next_delay("rate_limit", 3, max_delay_s=2.0, rng=rng) <= 2.0  # type: ignore[operator]


def test_retry_after_is_honoured_for_rate_limits_only_and_capped() -> None:
    assert retry.next_delay("rate_limit", 0, retry_after=7.0) == 7.0
    assert retry.next_delay("rate_limit", 0, retry_after=120.0, max_delay_s=30.0) == 30.0
    timeout_wait = retry.next_delay("timeout", 0, retry_after=7.0, rng=random.Random(3))
    assert timeout_wait is not None and timeout_wait <= 0.5
