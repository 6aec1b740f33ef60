"""The Costs dashboard: spend, tokens, calls, latency, errors and quality, aggregated in the database.

Every function reads one tenant (``tenant_id``) over one rolling window ending ``now``: ``day``
(1 day, hourly buckets), ``week`` (7 days) or ``month`` (30 days, daily buckets), and compares
with the window before it where a change is shown. Each runs a handful of statements whose
rows are bounded by groups (agents, models, buckets), never by events. On PostgreSQL the
``(tenant_id, created_at)`` index of migration 0005 covers every column they read, so a window
is an index-only scan (the planner may prefer a parallel sequential scan for the two months
``totals`` reads); ``bench/dashboard.py`` measures them on 1,000,000 events.

Definitions the page relies on:

- spend is the sum of priced calls; a call whose model has no price (``cost_usd`` NULL) is
  counted as *unpriced*, never as $0. A group whose calls are all unpriced has ``spend_usd`` None.
- a paragraph run is a trace whose usage events carry a ``paragraph_id``; it is verified when
  the paragraph version it produced (same ``trace_id``) has status ``verified``. Cost per verified
  paragraph divides the spend of every run, failed ones included, by the verified runs.
- latency percentiles leave out cache hits (answered locally in microseconds, they would hide
  the model's latency); error rates count calls that were not cache hits.
- quality figures count the paragraph versions created in the window and their sentence checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from core.errors import WorkbenchError
from core.metrics import VerificationSummary
from core.models import LlmUsageEvent, ParagraphVersion, SentenceCheck, Tenant, User, utcnow

Window = Literal["day", "week", "month"]
Dimension = Literal["agent", "model", "provider", "prompt_version"]

WINDOWS: dict[str, timedelta] = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
"""Length of each rolling window, ending now."""

DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)

QUALITY_AGENTS = ("writer", "verifier")
"""Agents whose prompt version is set against paragraph failure rates."""

_E = LlmUsageEvent


class UnknownWindowError(WorkbenchError):
    """A window or breakdown the dashboard does not know."""


@dataclass(frozen=True)
class Span:
    """A window's bounds: ``start <= created_at < end`` (UTC)."""

    start: datetime
    end: datetime
    bucket: Literal["hour", "day"]


def span(window: str, now: datetime | None = None) -> Span:
    """The rolling window ``window`` ending ``now`` (default: the current time)."""
    if window not in WINDOWS:
        raise UnknownWindowError(f"Unknown window {window!r}: choose one of {', '.join(WINDOWS)}.")
    end = _aware(now or utcnow())
    return Span(end - WINDOWS[window], end, "hour" if window == "day" else "day")


def previous(current: Span) -> Span:
    """The window of the same length just before ``current`` (for the change shown beside it)."""
    length = current.end - current.start
    return Span(current.start - length, current.start, current.bucket)


# Results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Calls, tokens and spend of one group of usage events."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_usd: float | None = 0.0
    unpriced_calls: int = 0
    cache_hits: int = 0
    errors: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.calls if self.calls else None

    @property
    def error_rate(self) -> float | None:
        """Errors among the calls that were not answered from the cache."""
        sent = self.calls - self.cache_hits
        return self.errors / sent if sent else None


@dataclass(frozen=True)
class Totals:
    window: Span
    current: Usage
    previous: Usage

    @property
    def spend_change(self) -> float | None:
        """Relative change of spend against the previous window (0.25 = +25 %); None without a base."""
        before, now = self.previous.spend_usd, self.current.spend_usd
        if not before or now is None:
            return None
        return (now - before) / before


@dataclass(frozen=True)
class Bucket:
    start: datetime
    usage: Usage


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    usage: Usage


@dataclass(frozen=True)
class TenantSpend:
    tenant_id: int
    tenant: str
    usage: Usage


@dataclass(frozen=True)
class LatencyRow:
    agent: str
    model: str
    calls: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class ErrorRow:
    provider: str
    model: str
    calls: int
    errors: int
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


@dataclass(frozen=True)
class ParagraphCosts:
    """Paragraph runs, how many ended verified, and what the priced ones cost.

    A run with an unpriced call has no known cost: it counts in ``runs`` and the verification
    rate, and in ``unpriced_runs``, but not in the cost per paragraph (which would read low).
    """

    runs: int
    verified_runs: int
    priced_runs: int
    priced_verified_runs: int
    spend_usd: float
    """Spend of the priced runs."""

    @property
    def unpriced_runs(self) -> int:
        return self.runs - self.priced_runs

    @property
    def cost_per_paragraph(self) -> float | None:
        return self.spend_usd / self.priced_runs if self.priced_runs else None

    @property
    def cost_per_verified_paragraph(self) -> float | None:
        """Spend of priced runs, failed ones included, per priced run that ended verified."""
        return self.spend_usd / self.priced_verified_runs if self.priced_verified_runs else None

    @property
    def verification_rate(self) -> float | None:
        return self.verified_runs / self.runs if self.runs else None


@dataclass(frozen=True)
class ModelQuality:
    """Paragraph runs grouped by the Writer's model: what they cost and how many ended verified."""

    model: str
    costs: ParagraphCosts


@dataclass(frozen=True)
class PromptFailureRow:
    agent: str
    prompt_version: str
    versions: int
    failed_versions: int
    sentences: int
    unsupported: int

    @property
    def failure_rate(self) -> float | None:
        """Paragraph versions not verified / versions."""
        return self.failed_versions / self.versions if self.versions else None

    @property
    def sentence_failure_rate(self) -> float | None:
        return self.unsupported / self.sentences if self.sentences else None


# Usage ----------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _usage_columns(within: ColumnElement[bool] | None = None) -> list[Any]:
    """Aggregates of one group of events, optionally only those matching ``within``."""

    def count(condition: ColumnElement[bool] | None = None) -> Any:
        both = [c for c in (within, condition) if c is not None]
        return func.count().filter(and_(*both)) if both else func.count()

    def total(column: Any) -> Any:
        return func.sum(column).filter(within) if within is not None else func.sum(column)

    return [
        count(),
        total(_E.input_tokens),
        total(_E.output_tokens),
        total(_E.cost_usd),
        count(_E.cost_usd.is_(None)),
        count(_E.cache_hit.is_(True)),
        count(_E.error_class.is_not(None)),
    ]


def _usage(row: Sequence[Any]) -> Usage:
    calls, tokens_in, tokens_out, spend, unpriced, hits, errors = row
    calls = int(calls or 0)
    unpriced = int(unpriced or 0)
    # SUM over only NULL costs is NULL: every call unpriced, which must not read as $0.
    money = _money(spend)
    return Usage(
        calls=calls,
        input_tokens=int(tokens_in or 0),
        output_tokens=int(tokens_out or 0),
        spend_usd=money if money is not None else (None if calls else 0.0),
        unpriced_calls=unpriced,
        cache_hits=int(hits or 0),
        errors=int(errors or 0),
    )


def _reporting(session: Session) -> None:
    """Tune this transaction for reporting on PostgreSQL: no JIT (compiling the plan of a month's
    aggregate took longer than running it) and room for the per-run hash aggregates in memory
    (the default 4 MB spilled a month of paragraph runs to disk). SET LOCAL ends with the
    transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))


def _in(window: Span) -> ColumnElement[bool]:
    return and_(_E.created_at >= window.start, _E.created_at < window.end)


def totals(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> Totals:
    """Spend, tokens, calls, unpriced calls, cache hits and errors of the window and the one before."""
    current = span(window, now)
    _reporting(session)
    before = previous(current)
    row = session.execute(
        select(*_usage_columns(_E.created_at >= current.start), *_usage_columns(_E.created_at < current.start)).where(
            _E.tenant_id == tenant_id, _E.created_at >= before.start, _E.created_at < current.end
        )
    ).one()
    return Totals(current, _usage(row[:7]), _usage(row[7:]))


def week_over_week(session: Session, *, tenant_id: int, now: datetime | None = None) -> Totals:
    """The last 7 days against the 7 before (``spend_change`` is the week-over-week change)."""
    return totals(session, tenant_id=tenant_id, window="week", now=now)


def _bucket_expression(session: Session, unit: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        # date_trunc on a timestamptz truncates in the session's time zone: pin UTC.
        return func.date_trunc(unit, func.timezone("UTC", _E.created_at))
    return func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", _E.created_at)


def _bucket_start(value: datetime | str) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC)


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment if unit == "hour" else moment.replace(hour=0)


def series(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> list[Bucket]:
    """Spend, tokens and calls per hour (day window) or per UTC day (week, month), oldest first.

    Buckets are grouped in SQL; hours or days without a call are filled in as zero so a chart
    shows the quiet periods too.
    """
    current = span(window, now)
    _reporting(session)
    bucket = _bucket_expression(session, current.bucket).label("bucket")
    rows = session.execute(
        select(bucket, *_usage_columns())
        .where(_E.tenant_id == tenant_id, _in(current))
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    found = {_bucket_start(row[0]): _usage(row[1:]) for row in rows}
    step = timedelta(hours=1) if current.bucket == "hour" else timedelta(days=1)
    out: list[Bucket] = []
    moment, last = _truncate(current.start, current.bucket), _truncate(current.end, current.bucket)
    while moment <= last:
        out.append(Bucket(moment, found.pop(moment, Usage())))
        moment += step
    return out


def _check_dimension(by: str) -> None:
    if by not in DIMENSIONS:
        raise UnknownWindowError(f"Unknown breakdown {by!r}: choose one of {', '.join(DIMENSIONS)}.")


def _by_spend(usage: Usage) -> tuple[bool, float, int]:
    return (usage.spend_usd is None, -(usage.spend_usd or 0.0), -usage.calls)


def _add(a: Usage, b: Usage) -> Usage:
    spend = None if a.spend_usd is None and b.spend_usd is None else (a.spend_usd or 0.0) + (b.spend_usd or 0.0)
    return Usage(
        a.calls + b.calls,
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        spend,
        a.unpriced_calls + b.unpriced_calls,
        a.cache_hits + b.cache_hits,
        a.errors + b.errors,
    )


def breakdowns(
    session: Session, *, tenant_id: int, window: str, now: datetime | None = None
) -> dict[str, list[BreakdownRow]]:
    """Usage of the window by agent, model, provider and prompt version, the largest spend first.

    One statement groups the events by (agent, provider, model, prompt version): a few dozen
    rows at most, whatever the number of events; each breakdown is a sum over those rows. A
    version name (v1) means nothing without its agent, so prompt versions read ``writer/v1``.
    """
    current = span(window, now)
    _reporting(session)
    keys = (_E.agent, _E.provider, _E.model, _E.prompt_version)
    rows = session.execute(
        select(*keys, *_usage_columns()).where(_E.tenant_id == tenant_id, _in(current)).group_by(*keys)
    ).all()
    folded: dict[str, dict[str, Usage]] = {by: {} for by in DIMENSIONS}
    for agent, provider, model, version, *aggregates in rows:
        usage = _usage(aggregates)
        for by, key in (
            ("agent", agent),
            ("model", model),
            ("provider", provider),
            ("prompt_version", f"{agent}/{version}"),
        ):
            seen = folded[by].get(str(key))
            folded[by][str(key)] = usage if seen is None else _add(seen, usage)
    return {
        by: sorted((BreakdownRow(k, u) for k, u in groups.items()), key=lambda r: (*_by_spend(r.usage), r.key))
        for by, groups in folded.items()
    }


def breakdown(
    session: Session, *, tenant_id: int, window: str, by: str, now: datetime | None = None
) -> list[BreakdownRow]:
    """One breakdown of :func:`breakdowns`: ``by`` is agent, model, provider or prompt_version."""
    _check_dimension(by)
    return breakdowns(session, tenant_id=tenant_id, window=window, now=now)[by]


def admin_tenant_ids(session: Session, *, user_id: int) -> list[int]:
    """Every tenant when the user is an admin (who may compare them), else none."""
    role = session.scalar(select(User.role).where(User.id == user_id))
    if role != "admin":
        return []
    return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


def spend_by_tenant(
    session: Session, *, tenant_ids: Sequence[int], window: str, now: datetime | None = None
) -> list[TenantSpend]:
    """The admin view across tenants: usage of each tenant named in ``tenant_ids`` (and only those)."""
    current = span(window, now)
    _reporting(session)
    if not tenant_ids:
        return []
    names = {
        int(i): str(n) for i, n in session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
    }
    rows = session.execute(
        select(_E.tenant_id, *_usage_columns())
        .where(_E.tenant_id.in_(list(tenant_ids)), _in(current))
        .group_by(_E.tenant_id)
    ).all()
    found = {int(row[0]): _usage(row[1:]) for row in rows}
    out = [TenantSpend(t, names.get(t, f"tenant {t}"), found.get(t, Usage())) for t in tenant_ids if t in names]
    return sorted(out, key=lambda r: (*_by_spend(r.usage), r.tenant))


# Latency and errors ---------------------------------------------------------------------------


def _percentiles_sqlite(tenant_id: int, window: Span) -> Select[Any]:
    # SQLite has no percentile function: rank each call within its (agent, model) with window
    # functions and interpolate between the two ranks around p * (n - 1), as percentile_cont does.
    ranked = (
        select(
            _E.agent,
            _E.model,
            _E.latency_ms,
            func.row_number().over(partition_by=(_E.agent, _E.model), order_by=_E.latency_ms).label("rn"),
            func.count().over(partition_by=(_E.agent, _E.model)).label("n"),
        )
        .where(_E.tenant_id == tenant_id, _in(window), _E.cache_hit.is_(False))
        .subquery()
    )

    def percentile(p: float) -> Any:
        position = literal(p) * (ranked.c.n - 1)
        below = cast(position, Integer)
        fraction = position - below
        return func.sum(
            case(
                (ranked.c.rn == below + 1, ranked.c.latency_ms * (1 - fraction)),
                (ranked.c.rn == below + 2, ranked.c.latency_ms * fraction),
                else_=0.0,
            )
        )

    return select(ranked.c.agent, ranked.c.model, func.max(ranked.c.n), percentile(0.5), percentile(0.95)).group_by(
        ranked.c.agent, ranked.c.model
    )


def latency(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> list[LatencyRow]:
    """Latency P50 and P95 (ms, interpolated like ``percentile_cont``) per agent and model."""
    current = span(window, now)
    _reporting(session)
    if session.get_bind().dialect.name == "postgresql":
        query: Select[Any] = (
            select(
                _E.agent,
                _E.model,
                func.count(),
                func.percentile_cont(0.5).within_group(_E.latency_ms),
                func.percentile_cont(0.95).within_group(_E.latency_ms),
            )
            .where(_E.tenant_id == tenant_id, _in(current), _E.cache_hit.is_(False))
            .group_by(_E.agent, _E.model)
        )
    else:
        query = _percentiles_sqlite(tenant_id, current)
    rows = [LatencyRow(str(a), str(m), int(n), float(p50), float(p95)) for a, m, n, p50, p95 in session.execute(query)]
    return sorted(rows, key=lambda r: (r.agent, r.model))


def error_rates(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> list[ErrorRow]:
    """Per provider and model: calls sent (cache hits left out), errors, and errors by class."""
    current = span(window, now)
    _reporting(session)
    rows = session.execute(
        select(_E.provider, _E.model, _E.error_class, func.count())
        .where(_E.tenant_id == tenant_id, _in(current), _E.cache_hit.is_(False))
        .group_by(_E.provider, _E.model, _E.error_class)
    ).all()
    grouped: dict[tuple[str, str], dict[str | None, int]] = {}
    for provider, model, error_class, n in rows:
        grouped.setdefault((str(provider), str(model)), {})[error_class] = int(n)
    out = [
        ErrorRow(
            provider,
            model,
            calls=sum(counts.values()),
            errors=sum(n for c, n in counts.items() if c is not None),
            by_class={str(c): n for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if c is not None},
        )
        for (provider, model), counts in grouped.items()
    ]
    return sorted(out, key=lambda r: (-(r.error_rate or 0.0), r.provider, r.model))


# Paragraph runs: cost and outcome -------------------------------------------------------------


def _runs(tenant_id: int, window: Span) -> Any:
    """One row per paragraph run in the window: its spend, unpriced calls and Writer model."""
    return (
        select(
            _E.trace_id.label("trace_id"),
            func.sum(_E.cost_usd).label("spend"),
            func.count().filter(_E.cost_usd.is_(None)).label("unpriced"),
            func.max(case((_E.agent == "writer", _E.model))).label("writer_model"),
        )
        .where(_E.tenant_id == tenant_id, _in(window), _E.paragraph_id.is_not(None))
        .group_by(_E.trace_id)
        .subquery("runs")
    )


def _outcomes(tenant_id: int, window: Span) -> Any:
    """Whether each run's paragraph version is verified (a version is saved after its run's calls)."""
    v = ParagraphVersion
    return (
        select(
            v.trace_id.label("trace_id"),
            func.max(case((v.status == "verified", 1), else_=0)).label("verified"),
        )
        .where(v.tenant_id == tenant_id, v.created_at >= window.start, v.trace_id.is_not(None))
        .group_by(v.trace_id)
        .subquery("outcomes")
    )


@dataclass(frozen=True)
class ParagraphRuns:
    total: ParagraphCosts
    by_model: list[ModelQuality]


def paragraph_runs(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> ParagraphRuns:
    """Paragraph runs of the window: all of them, and per Writer model (runs without a Writer
    call, re-checks and edits, count in the total only). One statement, grouped by model."""
    current = span(window, now)
    _reporting(session)
    runs, outcomes = _runs(tenant_id, current), _outcomes(tenant_id, current)
    verified = func.coalesce(outcomes.c.verified, 0)
    priced = runs.c.unpriced == 0
    rows = session.execute(
        select(
            runs.c.writer_model,
            func.count(),
            func.coalesce(func.sum(verified), 0),
            func.count().filter(priced),
            func.coalesce(func.sum(verified).filter(priced), 0),
            func.coalesce(func.sum(runs.c.spend).filter(priced), 0),
        )
        .select_from(runs.outerjoin(outcomes, outcomes.c.trace_id == runs.c.trace_id))
        .group_by(runs.c.writer_model)
    ).all()
    costs = [
        (model, ParagraphCosts(int(n), int(v), int(p), int(pv), float(spend))) for model, n, v, p, pv, spend in rows
    ]
    total = ParagraphCosts(
        sum(c.runs for _, c in costs),
        sum(c.verified_runs for _, c in costs),
        sum(c.priced_runs for _, c in costs),
        sum(c.priced_verified_runs for _, c in costs),
        sum(c.spend_usd for _, c in costs),
    )
    by_model = [ModelQuality(str(model), c) for model, c in costs if model is not None]
    return ParagraphRuns(total, sorted(by_model, key=lambda r: (-r.costs.runs, r.model)))


def paragraph_costs(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> ParagraphCosts:
    """Paragraph runs of the window, how many ended verified, and their spend (per run and per
    verified run)."""
    return paragraph_runs(session, tenant_id=tenant_id, window=window, now=now).total


def model_quality(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> list[ModelQuality]:
    """Per Writer model: paragraph runs, cost per paragraph and verification rate."""
    return paragraph_runs(session, tenant_id=tenant_id, window=window, now=now).by_model


# Quality --------------------------------------------------------------------------------------


def _versions_in(tenant_id: int, window: Span) -> ColumnElement[bool]:
    v = ParagraphVersion
    return and_(v.tenant_id == tenant_id, v.created_at >= window.start, v.created_at < window.end)


@dataclass(frozen=True)
class QualityReport:
    summary: VerificationSummary
    prompts: list[PromptFailureRow]


def quality_report(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> QualityReport:
    """Quality of the paragraph versions saved in the window (drafts, edits and re-checks alike):
    sentence support rate, paragraph verification rate and failure modes, and per Writer and
    Verifier prompt version (as pinned on each version) its versions, how many were not
    verified, its sentences and how many were unsupported.

    One statement. The window's versions are read once, with their pinned prompts taken out
    of the JSON once per version (PostgreSQL parses ``json`` on every access, so extracting it
    per sentence cost more than the rest of the query); versions are grouped by (pinned
    prompts, status) and their sentence checks by (pinned prompts, verdict, failure mode):
    every figure is a sum over those few groups.
    """
    current = span(window, now)
    _reporting(session)
    v, s = ParagraphVersion, SentenceCheck
    windowed = (
        select(
            v.id.label("id"),
            v.status.label("status"),
            *[cast(v.prompt_versions[agent].as_string(), String).label(f"pin_{agent}") for agent in QUALITY_AGENTS],
        )
        .where(_versions_in(tenant_id, current))
        .cte("windowed")
    )
    pins = [windowed.c[f"pin_{agent}"] for agent in QUALITY_AGENTS]
    checks = (
        select(s.version_id, s.verdict, s.failure_mode)
        # Always true for the versions joined below; it lets the (tenant_id, version_id) index
        # start at the window's first version instead of the tenant's first sentence ever.
        .where(s.tenant_id == tenant_id, s.version_id >= select(func.min(windowed.c.id)).scalar_subquery())
        .subquery("checks")
    )
    nothing = cast(null(), String)
    statement = union_all(
        select(literal("version"), *pins, windowed.c.status, nothing, nothing, func.count()).group_by(
            *pins, windowed.c.status
        ),
        select(literal("sentence"), *pins, nothing, checks.c.verdict, checks.c.failure_mode, func.count())
        .join_from(checks, windowed, windowed.c.id == checks.c.version_id)
        .group_by(*pins, checks.c.verdict, checks.c.failure_mode),
    )
    width = len(QUALITY_AGENTS)
    per_prompt: dict[tuple[str, str], list[int]] = {}  # [versions, failed, sentences, unsupported]

    def tally(pinned: Sequence[Any], slot: int, n: int) -> None:
        for agent, version in zip(QUALITY_AGENTS, pinned, strict=True):
            if version is not None:
                per_prompt.setdefault((agent, str(version)), [0, 0, 0, 0])[slot] += n

    paragraphs = verified = sentence_count = supported = 0
    modes: dict[str, int] = {}
    for kind, *pinned_and_rest in session.execute(statement):
        pinned, (status, verdict, mode, count) = pinned_and_rest[:width], pinned_and_rest[width:]
        n = int(count)
        if kind == "version":
            paragraphs += n
            verified += n if status == "verified" else 0
            tally(pinned, 0, n)
            if status != "verified":
                tally(pinned, 1, n)
            continue
        sentence_count += n
        tally(pinned, 2, n)
        if verdict == "supported":
            supported += n
        else:
            tally(pinned, 3, n)
        if mode is not None:
            modes[str(mode)] = modes.get(str(mode), 0) + n
    summary = VerificationSummary(
        sentences=sentence_count,
        supported=supported,
        paragraphs=paragraphs,
        verified_paragraphs=verified,
        failure_modes=dict(sorted(modes.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
    prompts = [PromptFailureRow(agent, version, *counts) for (agent, version), counts in sorted(per_prompt.items())]
    return QualityReport(summary, prompts)


def quality(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> VerificationSummary:
    """Sentence support rate, paragraph verification rate and failure modes of the window."""
    return quality_report(session, tenant_id=tenant_id, window=window, now=now).summary


def prompt_failure_rates(
    session: Session, *, tenant_id: int, window: str, now: datetime | None = None
) -> list[PromptFailureRow]:
    """Per Writer and Verifier prompt version: paragraph and sentence failure rates of the window."""
    return quality_report(session, tenant_id=tenant_id, window=window, now=now).prompts


# Everything the Costs page shows --------------------------------------------------------------


@dataclass(frozen=True)
class CostsView:
    totals: Totals
    week: Totals
    """The last 7 days against the 7 before, whatever the window (week over week)."""
    series: list[Bucket]
    breakdowns: dict[str, list[BreakdownRow]]
    latency: list[LatencyRow]
    errors: list[ErrorRow]
    paragraphs: ParagraphRuns
    quality: QualityReport


def costs_view(session: Session, *, tenant_id: int, window: str, now: datetime | None = None) -> CostsView:
    """Every figure of the Costs page for one tenant and window (one moment ``now`` for all)."""
    args: dict[str, Any] = {"tenant_id": tenant_id, "window": window, "now": _aware(now or utcnow())}
    current = totals(session, **args)
    return CostsView(
        totals=current,
        week=current if window == "week" else week_over_week(session, tenant_id=tenant_id, now=args["now"]),
        series=series(session, **args),
        breakdowns=breakdowns(session, **args),
        latency=latency(session, **args),
        errors=error_rates(session, **args),
        paragraphs=paragraph_runs(session, **args),
        quality=quality_report(session, **args),
    )
