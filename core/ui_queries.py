"""Read-only queries the operations pages show until their own issues land.

Each aggregates in the database; queries of tenant data take the tenant. The control events
are the exception: the kill switch and the breakers cover every tenant, so their log does too.
When core grows the real module (``core.metrics`` for costs and traces in issue 5, ``core.jobs``
for queues in issue 4, prompt deployments in issue 7, accounts in issue 6), the page switches
to it and the function here goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import as_utc
from core.models import ControlEvent, Job, LlmUsageEvent, ParagraphVersion, User


@dataclass(frozen=True)
class AgentUsage:
    agent: str
    calls: int
    input_tokens: int
    output_tokens: int
    cached_calls: int
    cost_usd: float


def usage_by_agent(session: Session, *, tenant_id: int) -> list[AgentUsage]:
    """Calls, tokens and recorded cost per agent from ``llm_usage_events``."""
    e = LlmUsageEvent
    rows = session.execute(
        select(
            e.agent,
            func.count(),
            func.coalesce(func.sum(e.input_tokens), 0),
            func.coalesce(func.sum(e.output_tokens), 0),
            func.count().filter(e.cache_hit.is_(True)),
            func.coalesce(func.sum(e.cost_usd), 0),
        )
        .where(e.tenant_id == tenant_id)
        .group_by(e.agent)
        .order_by(e.agent)
    )
    return [AgentUsage(agent, int(n), int(i), int(o), int(c), float(cost or 0)) for agent, n, i, o, c, cost in rows]


@dataclass(frozen=True)
class ModelUsage:
    agent: str
    provider: str
    model: str
    routing_tier: str | None
    calls: int


def usage_by_model(session: Session, *, tenant_id: int) -> list[ModelUsage]:
    """Which provider, model and routing tier served each agent, by call count."""
    e = LlmUsageEvent
    rows = session.execute(
        select(e.agent, e.provider, e.model, e.routing_tier, func.count())
        .where(e.tenant_id == tenant_id)
        .group_by(e.agent, e.provider, e.model, e.routing_tier)
        .order_by(e.agent, func.count().desc())
    )
    return [ModelUsage(a, p, m, t, int(n)) for a, p, m, t, n in rows]


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    calls: int
    tokens: int
    errors: int
    started: datetime
    ended: datetime


def recent_traces(session: Session, *, tenant_id: int, limit: int = 50) -> list[TraceSummary]:
    """The most recent traces seen in usage events, newest first."""
    e = LlmUsageEvent
    rows = session.execute(
        select(
            e.trace_id,
            func.count(),
            func.coalesce(func.sum(e.input_tokens + e.output_tokens), 0),
            func.count(e.error_class),
            func.min(e.created_at),
            func.max(e.created_at),
        )
        .where(e.tenant_id == tenant_id)
        .group_by(e.trace_id)
        .order_by(func.max(e.created_at).desc())
        .limit(limit)
    )
    return [TraceSummary(t, int(n), int(tok), int(err), a, b) for t, n, tok, err, a, b in rows]


def job_state_counts(session: Session, *, tenant_id: int) -> dict[str, int]:
    rows = session.execute(select(Job.state, func.count()).where(Job.tenant_id == tenant_id).group_by(Job.state))
    return {state: int(n) for state, n in rows}


def prompt_versions_in_use(session: Session, *, tenant_id: int, limit: int = 500) -> dict[str, dict[str, int]]:
    """Per agent, how many of the last ``limit`` paragraph versions used each prompt version."""
    pinned = session.scalars(
        select(ParagraphVersion.prompt_versions)
        .where(ParagraphVersion.tenant_id == tenant_id)
        .order_by(ParagraphVersion.id.desc())
        .limit(limit)
    )
    counts: dict[str, dict[str, int]] = {}
    for versions in pinned:
        for agent, version in (versions or {}).items():
            per_agent = counts.setdefault(str(agent), {})
            per_agent[str(version)] = per_agent.get(str(version), 0) + 1
    return counts


def user_label(session: Session, *, tenant_id: int, user_id: int) -> str:
    """How the acting user is named in the control log: ``Display name (email)``."""
    user = session.scalar(select(User).where(User.tenant_id == tenant_id, User.id == user_id))
    return f"{user.display_name} ({user.email})" if user else f"user {user_id}"


@dataclass(frozen=True)
class ControlEventRow:
    at: datetime
    control: str
    from_state: str | None
    to_state: str
    reason: str
    actor: str


def recent_control_events(session: Session, *, limit: int = 50) -> list[ControlEventRow]:
    """The latest kill-switch and breaker changes, newest first (global, not per tenant)."""
    e = ControlEvent
    rows = session.execute(
        select(e.at, e.control, e.from_state, e.to_state, e.reason, e.actor).order_by(e.id.desc()).limit(limit)
    )
    return [
        ControlEventRow(as_utc(at), c, before, after, reason, actor) for at, c, before, after, reason, actor in rows
    ]
