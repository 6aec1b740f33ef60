"""Which model serves an agent call, and why (recorded on every usage event and in the trace).

One rule decides, in this order, and the ``Route`` says which one did:

1. ``WORKBENCH_MODELS`` names a model for the agent or its prompt profile (tier ``override``);
2. the tenant's routing configuration forces a model for the agent on this provider (``override``);
3. the work's complexity score (``core.complexity``) gives a tier, simple, medium or complex, and
   the configuration names the tier's model for the agent on this provider;
4. otherwise the provider's default model for the prompt's profile (tier ``default``; also when
   routing is switched off or the call carries no score).

A configuration names models per provider, since a model id means nothing to another provider.
It is stored per tenant with history (``routing_configs``): a row is never updated, each save is
the next version, with who saved it and why. With none saved, a built-in configuration applies:
the offline provider keeps its one model per agent; OpenAI and Anthropic go cheaper for simple
work and stronger for complex work, medium being the provider's default model. Those built-in
tiers name the vendor's own models, so they step aside (provider default on every tier) when the
operator chose a model or a compatible server (``OPENAI_MODEL``, ``OPENAI_BASE_URL``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, authz, model_registry, pricing
from core.authz import Permission
from core.complexity import (
    DEFAULT_COMPLEX_FROM,
    DEFAULT_SIMPLE_BELOW,
    TIERS,
    Complexity,
    SourceFact,
    chunk_complexity,
    paragraph_complexity,
    tier_of,
)
from core.errors import ModelRetiredError, PermissionDeniedError, RoutingConfigError
from core.models import Fact, LlmUsageEvent, table_of, utcnow
from core.models import RoutingConfig as RoutingConfigRow
from core.prompts import AGENTS, DEFAULT_VERSION, Prompt
from core.prompts import load as load_prompt
from core.providers import Provider
from core.settings import Settings
from core.tenancy import Identity

__all__ = [
    "AGENTS",
    "TIERS",
    "Decision",
    "DryRun",
    "Route",
    "RoutingConfig",
    "StoredConfig",
    "brief_facts",
    "builtin_config",
    "changes",
    "choose",
    "config_history",
    "current_config",
    "dry_run",
    "edited",
    "judge_paragraph",
    "parse_config",
    "provider_defaults",
    "recent_decisions",
    "restore_config",
    "save_config",
    "unpriced_models",
]

_T = table_of(RoutingConfigRow)
MODEL_NAME_MAX = 128
"""Longest model id a usage event can hold, characters."""
REASON_MAX = 200
"""Longest routing reason a usage event can hold, characters."""
_MODEL_NAME_RE = re.compile(r"^[\w.:/@+-]+$")


@dataclass(frozen=True)
class Route:
    model: str
    tier: str
    """``simple``, ``medium`` or ``complex`` (judged by score), ``override`` or ``default``."""
    reason: str
    score: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)
    config_version: int | None = None
    """The routing configuration version that decided (0: the built-in one)."""


class RoutingConfig(BaseModel):
    """A tenant's routing: tier thresholds, a model per tier per agent per provider, overrides.

    An empty or missing model means the provider's default. Model ids are stripped; blanks are
    dropped, so a form's empty field simply means "the default".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    simple_below: float = Field(DEFAULT_SIMPLE_BELOW, ge=0, le=100)
    complex_from: float = Field(DEFAULT_COMPLEX_FROM, ge=0, le=100)
    models: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    """provider -> agent -> tier -> model."""
    overrides: dict[str, dict[str, str]] = Field(default_factory=dict)
    """provider -> agent -> model, used whatever the score."""

    @model_validator(mode="before")
    @classmethod
    def _drop_blanks(cls, data: Any) -> Any:
        # A form's empty field means "the provider's default": drop it rather than store "".
        if isinstance(data, dict):
            data = {
                **data,
                "models": _pruned(data.get("models", {}), 3),
                "overrides": _pruned(data.get("overrides", {}), 2),
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> RoutingConfig:
        if self.complex_from < self.simple_below:
            raise ValueError(
                f"the complex threshold ({self.complex_from:g}) is below the simple one ({self.simple_below:g}); "
                "simple must be below complex (equal leaves no medium tier)"
            )
        for provider, agents in self.models.items():
            for agent, tiers in agents.items():
                _check_agent(agent)
                for tier, model in tiers.items():
                    if tier not in TIERS:
                        raise ValueError(
                            f"unknown tier {tier!r} for {agent} on {provider}; tiers are {', '.join(TIERS)}"
                        )
                    _check_model(model, f"{agent} {tier} on {provider}")
        for provider, forced in self.overrides.items():
            for agent, model in forced.items():
                _check_agent(agent)
                _check_model(model, f"the {agent} override on {provider}")
        return self

    def tier(self, score: float) -> str:
        return tier_of(score, simple_below=self.simple_below, complex_from=self.complex_from)

    def tier_model(self, provider: str, agent: str, tier: str) -> str | None:
        return self.models.get(provider, {}).get(agent, {}).get(tier)

    def override(self, provider: str, agent: str) -> str | None:
        return self.overrides.get(provider, {}).get(agent)


def _pruned(value: Any, depth: int) -> Any:
    """Nested mappings ``depth`` levels deep down to model ids, stripped, blanks dropped (odd types
    are left for validation to report)."""
    if depth == 0 or not isinstance(value, dict):
        return value.strip() if isinstance(value, str) else value
    inner = {key: _pruned(item, depth - 1) for key, item in value.items()}
    return {key: item for key, item in inner.items() if item != ""} if depth == 1 else inner


def _check_agent(agent: str) -> None:
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; agents are {', '.join(AGENTS)}")


def _check_model(model: str, where: str) -> None:
    if len(model) > MODEL_NAME_MAX:
        raise ValueError(f"the model for {where} is longer than {MODEL_NAME_MAX} characters")
    if not _MODEL_NAME_RE.match(model):
        raise ValueError(
            f"the model for {where} ({model!r}) is not a model id: use letters, digits and . - _ : / @ + only"
        )


def parse_config(data: Mapping[str, Any]) -> RoutingConfig:
    """A configuration from plain data (a form, stored JSON), or a ``RoutingConfigError`` saying what to fix."""
    try:
        return RoutingConfig.model_validate(dict(data))
    except ValidationError as error:
        problems = "; ".join(
            str(e["msg"]).removeprefix("Value error, ") + (f" ({'.'.join(map(str, e['loc']))})" if e["loc"] else "")
            for e in error.errors()
        )
        raise RoutingConfigError(
            f"The routing configuration cannot be used: {problems}. Correct it and save again."
        ) from error


def edited(
    config: RoutingConfig,
    *,
    provider: str,
    enabled: bool,
    simple_below: float,
    complex_from: float,
    models: Mapping[str, Mapping[str, str]],
    overrides: Mapping[str, str],
) -> RoutingConfig:
    """``config`` with one provider's models and overrides replaced (the others' kept), validated."""
    data = config.model_dump()
    data.update(enabled=enabled, simple_below=simple_below, complex_from=complex_from)
    data["models"] = {**config.models, provider: {a: dict(tiers) for a, tiers in models.items()}}
    data["overrides"] = {**config.overrides, provider: dict(overrides)}
    return parse_config(data)


# -- the built-in configuration and stored versions ----------------------------------------------

_VENDOR_TIERS: dict[str, tuple[str, str, str, str]] = {
    # provider: simple, medium, complex model, and the settings that mean the operator chose otherwise
    "openai": ("gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1", "openai_model openai_base_url"),
    "anthropic": ("claude-haiku-4-5", "claude-haiku-4-5", "claude-sonnet-4-5", "anthropic_model anthropic_base_url"),
}


def builtin_config(settings: Settings) -> RoutingConfig:
    """What applies while a tenant has saved none (version 0)."""
    models: dict[str, dict[str, dict[str, str]]] = {
        "local": {agent: {tier: f"local-{agent}-1" for tier in TIERS} for agent in AGENTS}
    }
    for provider, (simple, medium, complex_, chosen) in _VENDOR_TIERS.items():
        # Vendor model ids would be wrong against a compatible server or beside a model the operator picked.
        if not set(chosen.split()) & settings.model_fields_set:
            tiers = dict(zip(TIERS, (simple, medium, complex_), strict=True))
            models[provider] = {agent: dict(tiers) for agent in AGENTS}
    return RoutingConfig(models=models)


@dataclass(frozen=True)
class StoredConfig:
    version: int
    """0 for the built-in configuration (nothing saved yet)."""
    config: RoutingConfig
    note: str = ""
    actor: str = ""
    created_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"routing v{self.version}" if self.version else "built-in routing"


def _stored(row: Any) -> StoredConfig:
    try:
        config = RoutingConfig.model_validate(row.config)
    except ValidationError as error:
        raise RoutingConfigError(
            f"Routing configuration version {row.version} cannot be read ({error.error_count()} problems); "
            "save a corrected version on the Routing page."
        ) from error
    return StoredConfig(row.version, config, row.note or "", row.actor or "", row.created_at)


_COLUMNS = (_T.c.version, _T.c.config, _T.c.note, _T.c.actor, _T.c.created_at)


def current_config(db: Connection | Session, *, tenant_id: int, settings: Settings) -> StoredConfig:
    """The tenant's latest saved version, else the built-in one (version 0)."""
    row = db.execute(
        select(*_COLUMNS).where(_T.c.tenant_id == tenant_id).order_by(_T.c.version.desc()).limit(1)
    ).first()
    return _stored(row) if row is not None else StoredConfig(0, builtin_config(settings))


def config_history(db: Connection | Session, *, tenant_id: int, limit: int = 50) -> list[StoredConfig]:
    """Saved versions, newest first."""
    rows = db.execute(
        select(*_COLUMNS).where(_T.c.tenant_id == tenant_id).order_by(_T.c.version.desc()).limit(limit)
    ).all()
    return [_stored(row) for row in rows]


def save_config(
    session: Session, *, tenant_id: int, config: RoutingConfig, actor: Identity, note: str, settings: Settings
) -> StoredConfig:
    """Store ``config`` as the tenant's next version; earlier versions stay as they were. Requires
    ``CHANGE_ROUTING`` in the actor's own tenant; audited (with the changes) in the same transaction."""
    authz.require(actor, Permission.CHANGE_ROUTING)
    if actor.tenant_id != tenant_id:
        raise PermissionDeniedError("Routing can only be changed in your own workspace.")
    latest = session.scalar(select(func.max(_T.c.version)).where(_T.c.tenant_id == tenant_id)) or 0
    before = current_config(session, tenant_id=tenant_id, settings=settings).config
    if latest and before == config:
        raise RoutingConfigError("Nothing changed since the current version; change a threshold or a model first.")
    _refuse_unusable_models(session, before, config)
    created = utcnow()
    try:
        session.execute(
            _T.insert().values(
                tenant_id=tenant_id,
                version=latest + 1,
                config=config.model_dump(mode="json"),
                note=note.strip(),
                actor=actor.name,
                created_at=created,
            )
        )
    except IntegrityError as error:  # the caller's transaction is spoilt; its scope rolls it back
        raise RoutingConfigError(
            f"Someone saved routing version {latest + 1} at the same moment; reload the page and save again."
        ) from error
    audit.record(
        session.connection(),
        audit.ROUTING_CHANGED,
        actor=actor,
        tenant_id=tenant_id,
        subject=f"routing version {latest + 1}",
        details={"version": latest + 1, "note": note.strip(), "changes": changes(before, config)},
    )
    return StoredConfig(latest + 1, config, note.strip(), actor.name, created)


def restore_config(session: Session, *, tenant_id: int, by: Identity, version: int, settings: Settings) -> StoredConfig:
    """Model rollback: save the configuration of an earlier ``version`` (0: the built-in one) as the
    tenant's newest, through ``save_config`` (same permission, same audit entry); the history keeps
    every version in between."""
    if version == 0:
        earlier = StoredConfig(0, builtin_config(settings))
    else:
        row = session.execute(select(*_COLUMNS).where(_T.c.tenant_id == tenant_id, _T.c.version == version)).first()
        if row is None:
            raise RoutingConfigError(
                f"This workspace has no routing version {version}; pick one from the history (Routing page)."
            )
        earlier = _stored(row)
    current = current_config(session, tenant_id=tenant_id, settings=settings)
    if current.version and current.config == earlier.config:
        raise RoutingConfigError(
            f"Routing version {version} is what applies now (as {current.label}); nothing to restore."
        )
    return save_config(
        session,
        tenant_id=tenant_id,
        config=earlier.config,
        actor=by,
        note=f"restored {earlier.label}",
        settings=settings,
    )


def changes(before: RoutingConfig, after: RoutingConfig) -> list[str]:
    """What differs, one line per setting, in words."""
    out = []
    for name, label in (("enabled", "routing"), ("simple_below", "simple below"), ("complex_from", "complex from")):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            out.append(f"{label}: {_show(old)} → {_show(new)}")
    for provider in sorted(before.models.keys() | after.models.keys()):
        for agent in AGENTS:
            for tier in TIERS:
                old_model, new_model = before.tier_model(provider, agent, tier), after.tier_model(provider, agent, tier)
                if old_model != new_model:
                    out.append(f"{provider} {agent} {tier}: {old_model or 'default'} → {new_model or 'default'}")
    for provider in sorted(before.overrides.keys() | after.overrides.keys()):
        for agent in AGENTS:
            old_model, new_model = before.override(provider, agent), after.override(provider, agent)
            if old_model != new_model:
                out.append(f"{provider} {agent} override: {old_model or 'none'} → {new_model or 'none'}")
    return out


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def named_models(config: RoutingConfig) -> set[str]:
    """Every model id the configuration names, on any provider, tier or override."""
    named = {m for agents in config.models.values() for tiers in agents.values() for m in tiers.values()}
    return named | {m for agents in config.overrides.values() for m in agents.values()}


def _refuse_unusable_models(session: Session, before: RoutingConfig, after: RoutingConfig) -> None:
    """A configuration may not add a model that is unregistered or retired (``core.model_registry``).

    Only models it adds are checked: one retired after an earlier version named it stays harmless
    (``choose`` skips it, the Routing page says so) and must not block saving other changes.
    """
    registry = model_registry.snapshot(session)
    for model in sorted(named_models(after) - named_models(before)):
        if not registry.usable(model):
            status = registry.status(model)
            raise RoutingConfigError(
                f"The routing configuration names {model}, which is {status} in the model registry; pick a "
                "registered active model (see the Models page) or ask an admin to "
                f"{'register' if status == model_registry.UNREGISTERED else 'reactivate'} it, then save again."
            )


def unpriced_models(
    config: RoutingConfig, settings: Settings, *, models: model_registry.Snapshot | None = None
) -> list[str]:
    """Models neither the registry (``models``) nor the price table prices: their calls are recorded without a cost."""
    return sorted(
        m
        for m in named_models(config)
        if not m.startswith(pricing.FREE_PREFIXES)
        and pricing.price_for(m, settings) is None
        and (models is None or models.price(m) is None)
    )


# -- the decision ------------------------------------------------------------------------------


def choose(
    provider: Provider,
    prompt: Prompt,
    settings: Settings,
    *,
    config: StoredConfig | None = None,
    complexity: Complexity | None = None,
    models: model_registry.Snapshot | None = None,
) -> Route:
    """The model for one call of ``prompt.agent``; without a ``config``, the built-in one applies.

    With the registry (``models``), a configured override or tier model that is retired or not
    registered is skipped for the next option, and the reason says so; ``ModelRetiredError`` when
    even the provider's default may not be called. A ``WORKBENCH_MODELS`` model is not skipped: the
    operator named it, so the gateway refuses it with the reason instead of quietly routing elsewhere.
    """
    return _decide(
        provider, prompt.agent, str(prompt.meta.get("model_profile", "default")), settings, config, complexity, models
    )


def _decide(
    provider: Provider,
    agent: str,
    profile: str,
    settings: Settings,
    stored: StoredConfig | None,
    complexity: Complexity | None,
    models: model_registry.Snapshot | None = None,
) -> Route:
    stored = stored or StoredConfig(0, builtin_config(settings))
    config, name = stored.config, provider.name
    score = complexity.score if complexity is not None else None
    breakdown = complexity.breakdown if complexity is not None else {}
    scored = f"; score {score:g}" if score is not None else "; no complexity score"
    skipped: list[str] = []

    def usable(model: str) -> bool:
        if models is None or models.usable(model):
            return True
        if (note := f"{model} ({models.status(model)})") not in skipped:
            skipped.append(note)
        return False

    def route(model: str, tier: str, reason: str, *, named_by_env: bool = False) -> Route:
        if not named_by_env and models is not None and (refused := models.refusal(model)) is not None:
            others = [s for s in skipped if not s.startswith(f"{model} (")]
            also = f" Routing also skipped {', '.join(others)} for the {agent} on {name}." if others else ""
            raise ModelRetiredError(f"{refused}{also}")
        note = f"skipped {', '.join(skipped)}; " if skipped else ""
        return Route(model, tier, (note + reason)[:REASON_MAX], score, breakdown, stored.version)

    env = settings.model_overrides
    if agent in env:
        return route(env[agent], "override", f"WORKBENCH_MODELS[{agent}]{scored}", named_by_env=True)
    if profile in env:
        reason = f"WORKBENCH_MODELS[{profile}] (profile of {agent}){scored}"
        return route(env[profile], "override", reason, named_by_env=True)
    default = provider.default_model(agent, profile)
    if not config.enabled:
        return route(default, "default", f"{stored.label} is off: {name} default for profile {profile}{scored}")
    forced = config.override(name, agent)
    if forced and usable(forced):
        return route(forced, "override", f"{stored.label} override for {agent} on {name}{scored}")
    if complexity is None or score is None:
        return route(default, "default", f"{name} default for profile {profile} (no complexity score)")
    tier = config.tier(score)
    judged = f"score {score:g} → {tier} ({_bounds(config, tier)})"
    model = config.tier_model(name, agent, tier)
    if model and usable(model):
        return route(model, tier, f"{judged}: {stored.label}, {agent} {tier} model on {name}")
    if model:
        return route(default, tier, f"{judged}: {stored.label}'s {tier} model may not be used, so the {name} default")
    return route(default, tier, f"{judged}: {stored.label} names no {tier} model for {agent} on {name}, so its default")


def _bounds(config: RoutingConfig, tier: str) -> str:
    if tier == "simple":
        return f"< {config.simple_below:g}"
    if tier == "complex":
        return f">= {config.complex_from:g}"
    return f"{config.simple_below:g} to < {config.complex_from:g}"


# -- what the router judges, read from the database ------------------------------------------------

_REF_RE = re.compile(r"^F(\d+)$", re.IGNORECASE)


def judge_paragraph(
    session: Session, *, tenant_id: int, manuscript_id: int, brief: str, refs: Sequence[str] | None = None
) -> Complexity:
    """A paragraph's score: its brief and the facts it draws on.

    With ``refs`` (the facts a draft cited or found), one query reads them. Without (before the
    Writer has run), the facts the manuscript's search finds for the brief stand in: the same
    search the Writer's tool makes, on the same cached index.
    """
    if refs is None:
        return paragraph_complexity(
            brief, brief_facts(session, tenant_id=tenant_id, manuscript_id=manuscript_id, brief=brief)
        )
    ids = sorted({int(m.group(1)) for r in refs if (m := _REF_RE.match(r.strip()))})
    rows = (
        session.execute(
            select(Fact.text, Fact.document_id).where(
                Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id, Fact.id.in_(ids)
            )
        ).all()
        if ids
        else []
    )
    return paragraph_complexity(brief, [SourceFact(text, document) for text, document in rows])


def brief_facts(session: Session, *, tenant_id: int, manuscript_id: int, brief: str) -> list[SourceFact]:
    """The facts of the manuscript that its search finds for the brief (what the Writer would start from)."""
    from core.retrieval import search_corpus  # bm25s and numpy: loaded where a search is made, not by the gateway

    found = search_corpus(session, tenant_id=tenant_id, manuscript_id=manuscript_id, query=brief)
    return [SourceFact(f.text, f.document_id) for f in found]


@dataclass(frozen=True)
class DryRun:
    paragraph: Complexity
    chunk: Complexity
    routes: dict[str, Route]
    """By agent; the Librarian's is judged as a chunk of the brief's text, the others by the paragraph."""


def dry_run(
    brief: str,
    facts: Sequence[SourceFact],
    config: StoredConfig,
    provider: Provider,
    settings: Settings,
    *,
    models: model_registry.Snapshot | None = None,
) -> DryRun:
    """What each agent would get for this brief and facts, without calling anything (tier ``refused``
    when the registry leaves the agent no model)."""
    paragraph, chunk = paragraph_complexity(brief, facts), chunk_complexity(brief)
    routes = {}
    for agent, profile in _profiles(settings).items():
        judged = chunk if agent == "librarian" else paragraph
        try:
            routes[agent] = _decide(provider, agent, profile, settings, config, judged, models)
        except ModelRetiredError as error:
            reason = str(error)[:REASON_MAX]
            routes[agent] = Route("", "refused", reason, judged.score, judged.breakdown, config.version)
    return DryRun(paragraph, chunk, routes)


def _profiles(settings: Settings) -> dict[str, str]:
    """Each agent's model profile, as its default prompt version asks."""
    return {
        agent: str(load_prompt(agent, DEFAULT_VERSION, settings.prompts_dir).meta.get("model_profile", "default"))
        for agent in AGENTS
    }


def provider_defaults(provider: Provider, settings: Settings) -> dict[str, str]:
    """The model each agent gets from ``provider`` when routing names none."""
    return {agent: provider.default_model(agent, profile) for agent, profile in _profiles(settings).items()}


@dataclass(frozen=True)
class Decision:
    agent: str
    provider: str
    model: str
    tier: str
    score: float | None
    reason: str
    trace_id: str
    created_at: datetime


def recent_decisions(session: Session, *, tenant_id: int, limit: int = 50) -> list[Decision]:
    """The latest routing decisions, from the usage events (newest first)."""
    e = LlmUsageEvent
    rows = session.execute(
        select(
            e.agent, e.provider, e.model, e.routing_tier, e.routing_score, e.routing_reason, e.trace_id, e.created_at
        )
        .where(e.tenant_id == tenant_id, e.routing_tier.is_not(None))
        .order_by(e.id.desc())
        .limit(limit)
    ).all()
    return [Decision(r[0], r[1], r[2], r[3] or "", r[4], r[5] or "", r[6], r[7]) for r in rows]
