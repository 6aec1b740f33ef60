"""Request and response bodies of the ops routes (``api.routes_ops``), built from the ``core`` results.

Each ``of`` class method turns one ``core`` dataclass or row into the body the API promises; the
OpenAPI document (``docs/openapi.json``) is generated from these classes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from core import alerts, dashboard, routing
from core import trajectories as traj
from core.models import LlmUsageEvent, Trajectory
from core.trajectories import as_utc


def _money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _when(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class Usage(BaseModel):
    calls: int
    input_tokens: int
    output_tokens: int
    tokens: int
    spend_usd: float | None = Field(description="None when every call was unpriced (never read as $0)")
    unpriced_calls: int
    cache_hits: int
    errors: int
    cache_hit_rate: float | None
    error_rate: float | None = Field(description="errors among the calls not answered from the cache")

    @classmethod
    def of(cls, usage: dashboard.Usage) -> Usage:
        return cls(
            calls=usage.calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens=usage.tokens,
            spend_usd=usage.spend_usd,
            unpriced_calls=usage.unpriced_calls,
            cache_hits=usage.cache_hits,
            errors=usage.errors,
            cache_hit_rate=usage.cache_hit_rate,
            error_rate=usage.error_rate,
        )


class Breakdown(BaseModel):
    key: str
    usage: Usage


class Latency(BaseModel):
    agent: str
    model: str
    calls: int
    p50_ms: float
    p95_ms: float


class ParagraphCosts(BaseModel):
    runs: int
    verified_runs: int
    priced_runs: int
    unpriced_runs: int
    spend_usd: float = Field(description="spend of the priced runs")
    cost_per_paragraph: float | None
    cost_per_verified_paragraph: float | None
    verification_rate: float | None

    @classmethod
    def of(cls, costs: dashboard.ParagraphCosts) -> ParagraphCosts:
        return cls(
            runs=costs.runs,
            verified_runs=costs.verified_runs,
            priced_runs=costs.priced_runs,
            unpriced_runs=costs.unpriced_runs,
            spend_usd=costs.spend_usd,
            cost_per_paragraph=costs.cost_per_paragraph,
            cost_per_verified_paragraph=costs.cost_per_verified_paragraph,
            verification_rate=costs.verification_rate,
        )


class CostSummary(BaseModel):
    """The Costs page's headline figures for the token's tenant over one rolling window."""

    window: str
    start: datetime
    end: datetime
    current: Usage
    previous: Usage = Field(description="the window of the same length just before")
    spend_change: float | None = Field(description="relative change of spend (0.25 = +25 %)")
    by_agent: list[Breakdown]
    by_model: list[Breakdown]
    latency: list[Latency] = Field(description="P50/P95 per agent and model, cache hits left out")
    paragraphs: ParagraphCosts


class UsageEvent(BaseModel):
    """One gateway call's metadata (no prompt or output)."""

    id: int
    trace_id: str
    paragraph_id: int | None
    agent: str
    provider: str
    model: str
    prompt_version: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_ms: float
    cache_hit: bool
    error_class: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: LlmUsageEvent) -> UsageEvent:
        return cls(
            id=row.id,
            trace_id=row.trace_id,
            paragraph_id=row.paragraph_id,
            agent=row.agent,
            provider=row.provider,
            model=row.model,
            prompt_version=row.prompt_version,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost_usd=_money(row.cost_usd),
            latency_ms=row.latency_ms,
            cache_hit=row.cache_hit,
            error_class=row.error_class,
            created_at=as_utc(row.created_at),
        )


class UsageEventPage(BaseModel):
    items: list[UsageEvent]
    total: int = Field(description="events matching the filters, all pages")
    limit: int
    offset: int


class AlertRuleChange(BaseModel):
    rule: str = Field(max_length=64, description="an alert rule name, as GET lists them")
    threshold: float
    enabled: bool = True
    params: dict[str, float | None] = Field(default_factory=dict, description="only the keys given change")


class AlertRule(BaseModel):
    rule: str
    title: str
    description: str
    severity: str
    window: str
    enabled: bool
    threshold: float
    bounds: tuple[float, float]
    params: dict[str, float | None]
    actor: str = Field(description="who last changed it; empty while it has its defaults")
    updated_at: datetime | None

    @classmethod
    def of(cls, setting: alerts.RuleSetting) -> AlertRule:
        rule = setting.rule
        return cls(
            rule=rule.name,
            title=rule.title,
            description=rule.description,
            severity=rule.severity,
            window=rule.window,
            enabled=setting.enabled,
            threshold=setting.threshold,
            bounds=rule.bounds,
            params=setting.params,
            actor=setting.actor,
            updated_at=_when(setting.updated_at),
        )


class RoutingChange(BaseModel):
    config: dict[str, Any] = Field(
        description="enabled, simple_below, complex_from, models (provider -> agent -> tier -> model), "
        "overrides (provider -> agent -> model); as GET returns it"
    )
    note: str = Field("", max_length=500, description="why, for the history and the audit log")


class RoutingState(BaseModel):
    version: int = Field(description="0: the built-in configuration (nothing saved yet)")
    label: str
    config: dict[str, Any]
    note: str
    actor: str
    created_at: datetime | None

    @classmethod
    def of(cls, stored: routing.StoredConfig) -> RoutingState:
        return cls(
            version=stored.version,
            label=stored.label,
            config=stored.config.model_dump(mode="json"),
            note=stored.note,
            actor=stored.actor,
            created_at=_when(stored.created_at),
        )


class TrajectorySummary(BaseModel):
    trace_id: str
    kind: str
    status: str
    paragraph_id: int | None
    version_id: int | None
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    error_class: str | None
    started_at: datetime
    ended_at: datetime | None
    duration_ms: float | None

    @classmethod
    def of(cls, row: Trajectory) -> TrajectorySummary:
        return cls(
            trace_id=row.trace_id,
            kind=row.kind,
            status=row.status,
            paragraph_id=row.paragraph_id,
            version_id=row.version_id,
            calls=row.calls,
            errors=row.errors,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost_usd=_money(row.cost_usd),
            error_class=row.error_class,
            started_at=as_utc(row.started_at),
            ended_at=_when(row.ended_at),
            duration_ms=row.duration_ms,
        )


class TrajectoryPage(BaseModel):
    items: list[TrajectorySummary]
    total: int = Field(description="trajectories matching the filters, all pages")
    limit: int
    offset: int


class TraceSpan(BaseModel):
    span_id: str
    parent_span_id: str | None
    depth: int
    kind: str
    name: str
    agent: str | None
    provider: str | None
    model: str | None
    prompt_version: str | None
    status: str
    error_class: str | None
    started_at: datetime
    offset_ms: float = Field(description="from the trace's start")
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    attributes: dict[str, Any]
    has_content: bool
    content: Any = Field(None, description="the decrypted content; null unless the role may read it")
    content_error: str | None = None

    @classmethod
    def of(cls, span: traj.Span) -> TraceSpan:
        e = span.event
        return cls(
            span_id=e.span_id,
            parent_span_id=e.parent_span_id,
            depth=span.depth,
            kind=e.kind,
            name=e.name,
            agent=e.agent,
            provider=e.provider,
            model=e.model,
            prompt_version=e.prompt_version,
            status=e.status,
            error_class=e.error_class,
            started_at=as_utc(e.started_at),
            offset_ms=span.offset_ms,
            duration_ms=e.duration_ms,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            cost_usd=_money(e.cost_usd),
            attributes=dict(e.attributes or {}),
            has_content=span.has_content,
            content=span.content,
            content_error=span.content_error,
        )


class ProducedSentence(BaseModel):
    ordinal: int
    text: str
    cites: list[str]
    verdict: str
    failure_mode: str | None
    reason: str


class ProducedVersion(BaseModel):
    id: int
    paragraph_id: int
    number: int
    text: str
    status: str
    sentences: list[ProducedSentence]

    @classmethod
    def of(cls, version: traj.ProducedVersion) -> ProducedVersion:
        return cls(
            id=version.id,
            paragraph_id=version.paragraph_id,
            number=version.number,
            text=version.text,
            status=version.status,
            sentences=[ProducedSentence(**vars(s)) for s in version.sentences],
        )


class TraceDetail(BaseModel):
    trajectory: TrajectorySummary
    content_hidden: bool = Field(description="true when the token's role may not read span content")
    spans: list[TraceSpan]
    version: ProducedVersion | None = Field(description="the paragraph version the run produced (content)")

    @classmethod
    def of(cls, trace: traj.Trace) -> TraceDetail:
        return cls(
            trajectory=TrajectorySummary.of(trace.trajectory),
            content_hidden=trace.content_hidden,
            spans=[TraceSpan.of(s) for s in trace.spans],
            version=None if trace.version is None else ProducedVersion.of(trace.version),
        )
