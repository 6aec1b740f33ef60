"""Which provider and model serve an agent call, and why (recorded on every usage event).

Today one rule decides: ``WORKBENCH_MODELS`` may name a model per agent or per prompt profile,
otherwise the provider's default for that profile. The tiered router (simple work to cheaper
models) replaces ``choose`` later; the tier and reason it records stay in the same place.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.prompts import Prompt
from core.providers import Provider
from core.settings import Settings


@dataclass(frozen=True)
class Route:
    model: str
    tier: str
    reason: str


def choose(provider: Provider, prompt: Prompt, settings: Settings) -> Route:
    profile = str(prompt.meta.get("model_profile", "default"))
    overrides = settings.model_overrides
    if prompt.agent in overrides:
        return Route(overrides[prompt.agent], "override", f"WORKBENCH_MODELS[{prompt.agent}]")
    if profile in overrides:
        return Route(overrides[profile], "override", f"WORKBENCH_MODELS[{profile}] (profile of {prompt.agent})")
    model = provider.default_model(prompt.agent, profile)
    return Route(model, "default", f"{provider.name} default for profile {profile}")
