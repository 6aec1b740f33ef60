"""Service level objectives of the paragraph loop, each computed by one query in the database.

Over ``SLO_WINDOW`` (the last 7 days) for one tenant:

- paragraph success rate: drafted versions that came out verified, out of every paragraph run
  that ended: a drafted version (verified or needing review), or a draft or verify_draft job that
  FAILED in a trace that saved no version. Cancelled and still running runs have not ended and do
  not count. Target: at least 95 %.
- false supports: false support reports (a sentence shown as supported that is not). Target: 0.
- P95 paragraph latency: per drafting trace whose ``verify_draft`` job succeeded, from its first
  job's ``created_at`` to its last job's ``finished_at`` (queue waits included: what the researcher
  waited). The 95th percentile by nearest rank (the smallest duration with at least 95 % of the
  runs at or under it), with window functions, so SQLite needs no percentile function. Target:
  at most 60 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, exists, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.alerts import count, share
from core.db import as_utc
from core.job_records import FAILED, SUCCEEDED
from core.models import FalseSupportReport, Job, ParagraphVersion, table_of, utcnow

SLO_WINDOW = timedelta(days=7)
"""How far back the SLOs look."""
SUCCESS_TARGET = 0.95
"""Paragraph success rate to meet, share."""
FALSE_SUPPORT_TARGET = 0
"""False supports allowed in the window."""
P95_LATENCY_TARGET_S = 60.0
"""Slowest the 95th percentile paragraph run may be, seconds."""
DRAFT_KINDS = ("draft", "verify_draft")

_V = table_of(ParagraphVersion)
_J = table_of(Job)
_F = table_of(FalseSupportReport)


class seconds_between(FunctionElement[float]):
    """Seconds from the first datetime argument to the second, as a float, on SQLite and PostgreSQL."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@dataclass(frozen=True)
class Slo:
    name: str
    title: str
    value: float | None
    """None when nothing in the window could be measured."""
    target: float
    objective: str
    """The target in words, e.g. ``at least 95.0%``."""
    detail: str
    met: bool | None
    """None when there is no value to judge."""
    shown: str
    """The value formatted for people."""

    @property
    def verdict(self) -> str:
        return "no data" if self.met is None else "met" if self.met else "not met"


def _success_rate(session: Session, tenant_id: int, since: datetime, now: datetime) -> Slo:
    # An alias: the outer query counts paragraph_versions too, and must not be correlated in here.
    kept = _V.alias("kept")
    no_version = ~exists().where(kept.c.tenant_id == tenant_id, kept.c.trace_id == _J.c.trace_id)
    versions = select(func.count(), func.coalesce(func.sum(case((_V.c.status == "verified", 1), else_=0)), 0)).where(
        _V.c.tenant_id == tenant_id, _V.c.origin == "drafted", _V.c.created_at > since, _V.c.created_at <= now
    )
    failed_runs = (
        select(func.count(_J.c.trace_id.distinct()))
        .where(
            _J.c.tenant_id == tenant_id,
            _J.c.kind.in_(DRAFT_KINDS),
            _J.c.state == FAILED,
            _J.c.finished_at > since,
            _J.c.finished_at <= now,
            no_version,
        )
        .scalar_subquery()
    )
    saved, verified, failed = session.execute(versions.add_columns(failed_runs)).one()
    ended = int(saved) + int(failed)
    value = int(verified) / ended if ended else None
    return Slo(
        name="paragraph_success_rate",
        title="Paragraph success rate",
        value=value,
        target=SUCCESS_TARGET,
        objective=f"at least {share(SUCCESS_TARGET)}",
        detail=f"{verified} verified of {ended} paragraph runs that ended ({failed} failed)",
        met=None if value is None else round(value, 9) >= SUCCESS_TARGET,
        shown="–" if value is None else share(value),
    )


def _false_supports(session: Session, tenant_id: int, since: datetime, now: datetime) -> Slo:
    reports = int(
        session.scalar(
            select(func.count()).where(_F.c.tenant_id == tenant_id, _F.c.created_at > since, _F.c.created_at <= now)
        )
        or 0
    )
    return Slo(
        name="false_supports",
        title="False supports",
        value=float(reports),
        target=FALSE_SUPPORT_TARGET,
        objective=f"at most {FALSE_SUPPORT_TARGET}",
        detail=f"{reports} false support report(s)",
        met=reports <= FALSE_SUPPORT_TARGET,
        shown=count(reports),
    )


def _p95_latency(session: Session, tenant_id: int, since: datetime, now: datetime) -> Slo:
    verified_run = func.sum(case((and_(_J.c.kind == "verify_draft", _J.c.state == SUCCEEDED), 1), else_=0))
    runs = (
        select(seconds_between(func.min(_J.c.created_at), func.max(_J.c.finished_at)).label("seconds"))
        .where(_J.c.tenant_id == tenant_id, _J.c.kind.in_(DRAFT_KINDS))
        .group_by(_J.c.trace_id)
        .having(
            verified_run > 0,
            func.count(_J.c.finished_at) == func.count(),  # every job of the run has ended
            func.max(_J.c.finished_at) > since,
            func.max(_J.c.finished_at) <= now,
        )
        .subquery()
    )
    ranked = select(
        runs.c.seconds,
        func.row_number().over(order_by=runs.c.seconds).label("rank"),
        func.count().over().label("runs"),
    ).subquery()
    # Nearest rank: the smallest duration whose rank reaches 95 % of the runs (integers, no rounding).
    p95, measured = session.execute(
        select(func.min(ranked.c.seconds), func.max(ranked.c.runs)).where(ranked.c.rank * 100 >= ranked.c.runs * 95)
    ).one()
    value = None if p95 is None else float(p95)
    return Slo(
        name="p95_paragraph_latency",
        title="P95 paragraph latency",
        value=value,
        target=P95_LATENCY_TARGET_S,
        objective=f"at most {P95_LATENCY_TARGET_S:g} s",
        detail=f"over {measured or 0} verified paragraph run(s), queue waits included",
        met=None if value is None else value <= P95_LATENCY_TARGET_S,
        shown="–" if value is None else f"{value:.1f} s",
    )


def slo_status(session: Session, *, tenant_id: int, now: datetime | None = None) -> list[Slo]:
    """The three SLOs of ``tenant_id`` over the ``SLO_WINDOW`` that ends at ``now``."""
    end = as_utc(now) if now else utcnow()
    since = end - SLO_WINDOW
    return [
        _success_rate(session, tenant_id, since, end),
        _false_supports(session, tenant_id, since, end),
        _p95_latency(session, tenant_id, since, end),
    ]
