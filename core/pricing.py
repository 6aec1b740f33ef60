"""What a call cost: a price table per model (USD per million tokens) with overrides.

Provider-reported token counts are priced when a provider reports them; otherwise the
gateway's tiktoken estimate is, and the usage event says so. A model missing from the table
is never priced at zero: its cost is left empty (``None``), a warning is logged once per
process, and the event is marked ``unknown_model`` so the Costs page can count it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float


PRICES: dict[str, Price] = {
    # OpenAI list prices, USD per 1M tokens (input, output, cached input).
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    # Anthropic list prices; cached input is a prompt-cache read.
    "claude-opus-4-1": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
}
"""Built-in list prices; ``WORKBENCH_PRICING`` overrides or adds models."""

FREE_PREFIXES = ("local-",)
"""Models that run on this machine and cost nothing (the offline provider)."""

Pricing = Literal["priced", "free", "unknown_model", "cache_hit"]

_warned: set[str] = set()


@dataclass(frozen=True)
class Cost:
    usd: float | None
    pricing: Pricing


def price_for(model: str, settings: Settings) -> Price | None:
    """The price of ``model``: an override, then the table by exact id, then by the longest
    table id it starts with (dated snapshots like ``gpt-4o-mini-2024-07-18`` or ``-latest``)."""
    if model in settings.pricing_overrides:
        entry = settings.pricing_overrides[model]
        return Price(
            entry.get("input", 0.0), entry.get("output", 0.0), entry.get("cached_input", entry.get("input", 0.0))
        )
    if model in PRICES:
        return PRICES[model]
    candidates = [known for known in PRICES if model.startswith(known + "-")]
    return PRICES[max(candidates, key=len)] if candidates else None


def cost_of(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    settings: Settings,
    registered: Price | None = None,
) -> Cost:
    """Cost of one call; ``input_tokens`` includes the ``cached_tokens`` billed at the cached rate.

    ``registered`` is the model registry's price (``core.model_registry``): it wins over the built-in
    table, so an admin corrects a price without a release; ``WORKBENCH_PRICING`` still wins over both.
    """
    if model.startswith(FREE_PREFIXES):
        return Cost(0.0, "free")
    if registered is not None and model not in settings.pricing_overrides:
        price: Price | None = registered
    else:
        price = price_for(model, settings)
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning("no price for model %r: its calls are recorded unpriced; add it to WORKBENCH_PRICING", model)
        return Cost(None, "unknown_model")
    cached = min(cached_tokens, input_tokens)
    usd = ((input_tokens - cached) * price.input + cached * price.cached_input + output_tokens * price.output) / 1e6
    return Cost(round(usd, 8), "priced")
