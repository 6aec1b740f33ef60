"""The release checklist's "cost estimates reviewed": the golden run's paragraphs priced under every
model the configuration can send an agent to, against the per-paragraph cap.

A paragraph is one golden case's drafting run (its draft trace: Writer, Verifier, Rewriter), the
unit the cost breaker caps (``BREAKER_PARAGRAPH_COST_USD``). Its tokens, per agent, come from the
run's usage events (cache hits excluded: they cost nothing and another model would be called);
a case without events falls back to its recorded totals. Each configured model prices every
token of the paragraph as if it served the whole paragraph, with the gateway's own pricing
(``core.pricing.cost_of`` with the model registry's price), so a model fit for one agent only is
still shown what a paragraph would cost on it: a conservative figure, never an optimistic one.

Configured models, per agent: the provider's default (``OPENAI_MODEL`` ...), ``WORKBENCH_MODELS``
overrides, and every model a tenant's current routing configuration (or the built-in one) names
for the agent on the configured provider.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from core import model_registry, pricing, prompts, routing
from core.golden_results import RunSummary
from core.models import GoldenCaseResult, LlmUsageEvent, Tenant
from core.providers import get_provider
from core.release_items import COSTS, ItemResult
from core.settings import Settings

_MODEL_SETTING = {"openai": "openai_model", "anthropic": "anthropic_model"}
"""Remote providers' default model comes from a setting: read it without building an SDK client."""


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached: int = 0


@dataclass(frozen=True)
class CostRow:
    model: str
    agents: tuple[str, ...]
    """The agents the configuration can send to this model."""
    mean_usd: float | None
    max_usd: float | None
    """None when the model has no price."""


def provider_defaults(settings: Settings) -> dict[str, str]:
    """The configured provider's model per agent when routing names none."""
    setting = _MODEL_SETTING.get(settings.provider)
    if setting is not None:
        return dict.fromkeys(prompts.AGENTS, str(getattr(settings, setting)))
    return routing.provider_defaults(get_provider(settings.provider), settings)


def configured_models(connection: Connection, settings: Settings) -> dict[str, set[str]]:
    """Every model each agent can be sent to on the configured provider."""
    name = settings.provider
    out = {agent: {model} for agent, model in provider_defaults(settings).items()}
    configs = [routing.builtin_config(settings)]
    for tenant in connection.scalars(select(Tenant.id)):
        configs.append(routing.current_config(connection, tenant_id=int(tenant), settings=settings).config)
    for agent in prompts.AGENTS:
        profile = str(prompts.load(agent, prompts.DEFAULT_VERSION, settings.prompts_dir).meta.get("model_profile", ""))
        for key in (agent, profile):
            if key in settings.model_overrides:
                out[agent].add(settings.model_overrides[key])
        for config in configs:
            named = [config.override(name, agent), *(config.tier_model(name, agent, t) for t in routing.TIERS)]
            out[agent].update(m for m in named if m)
    return out


def paragraph_tokens(connection: Connection, run_id: int) -> list[dict[str, Tokens]]:
    """Per golden case of the run: the tokens of its drafting run, by agent."""
    cases = connection.execute(
        select(GoldenCaseResult.trace_id, GoldenCaseResult.input_tokens, GoldenCaseResult.output_tokens).where(
            GoldenCaseResult.run_id == run_id
        )
    ).all()
    traces = [c.trace_id for c in cases if c.trace_id]
    e = LlmUsageEvent
    by_trace: dict[str, dict[str, Tokens]] = defaultdict(dict)
    if traces:
        rows = connection.execute(
            select(e.trace_id, e.agent, func.sum(e.input_tokens), func.sum(e.output_tokens), func.sum(e.cached_tokens))
            .where(e.trace_id.in_(traces), e.cache_hit.is_(False))
            .group_by(e.trace_id, e.agent)
        ).all()
        for trace, agent, used_in, used_out, cached in rows:
            by_trace[trace][agent] = Tokens(int(used_in or 0), int(used_out or 0), int(cached or 0))
    return [
        by_trace[c.trace_id] if c.trace_id in by_trace else {"paragraph": Tokens(c.input_tokens, c.output_tokens)}
        for c in cases
    ]


def price_rows(
    paragraphs: list[dict[str, Tokens]],
    models: dict[str, set[str]],
    settings: Settings,
    registry: model_registry.Snapshot,
) -> list[CostRow]:
    """Mean and max USD per paragraph under each configured model (sorted by model id)."""
    agents_of: dict[str, list[str]] = defaultdict(list)
    for agent, named in models.items():
        for model in named:
            agents_of[model].append(agent)
    rows = []
    for model in sorted(agents_of):
        costs: list[float] = []
        for paragraph in paragraphs:
            priced = [
                pricing.cost_of(
                    model,
                    input_tokens=t.input,
                    output_tokens=t.output,
                    cached_tokens=t.cached,
                    settings=settings,
                    registered=registry.price(model),
                ).usd
                for t in paragraph.values()
            ]
            if any(usd is None for usd in priced):
                costs = []
                break
            costs.append(sum(usd for usd in priced if usd is not None))
        unpriced = bool(paragraphs) and not costs
        mean = None if unpriced else (sum(costs) / len(costs) if costs else 0.0)
        rows.append(
            CostRow(model, tuple(sorted(agents_of[model])), mean, None if unpriced else max(costs, default=0.0))
        )
    return rows


def costs_item(connection: Connection, settings: Settings, run: RunSummary | None) -> ItemResult:
    if run is None:
        return ItemResult(
            COSTS, False, "No golden run of the serving versions to price: run `python -m core golden run`."
        )
    paragraphs = paragraph_tokens(connection, run.id)
    rows = price_rows(
        paragraphs, configured_models(connection, settings), settings, model_registry.snapshot(connection)
    )
    cap = settings.breaker_paragraph_cost_usd
    table = [{"model": r.model, "agents": list(r.agents), "mean_usd": r.mean_usd, "max_usd": r.max_usd} for r in rows]
    details = {"run_id": run.id, "paragraphs": len(paragraphs), "cap_usd": cap, "table": table}
    problems = []
    for r in rows:
        if r.max_usd is None:
            problems.append(
                f"{r.model} has no price: add one (`python -m core models add {r.model} --input-price USD "
                "--output-price USD`, or WORKBENCH_PRICING)"
            )
        elif r.max_usd > cap:
            problems.append(
                f"{r.model} costs up to ${r.max_usd:.4f} per paragraph, over the cap of ${cap:g} "
                "(BREAKER_PARAGRAPH_COST_USD): route the agents to a cheaper model or review the cap"
            )
    if problems:
        text = "; ".join(problems)
        return ItemResult(COSTS, False, text + ".", details)
    dearest = max((r.max_usd or 0.0 for r in rows), default=0.0)
    return ItemResult(
        COSTS,
        True,
        f"{len(paragraphs)} paragraphs of golden run #{run.id} under {len(rows)} model(s): at most "
        f"${dearest:.4f} per paragraph (cap ${cap:g})",
        details,
    )
