"""Measuring a prompt canary against its baseline: figures and the verdict they lead to.

A canary serves a share of paragraphs (``core.deployments``); every paragraph version records which
prompt version of each agent made it (``paragraph_versions.prompt_versions``). Over the versions
created since the canary started, each arm (canary version, baseline version) gets:

- paragraphs and pass rate: the share of them saved as verified;
- false supports: distinct sentences of them that someone reported (``core.false_supports``);
- cost per paragraph: every call of their traces (a prompt change to one agent can change what the
  others cost), over the paragraphs;
- latency P50 of the agent's own calls under that version (cache hits left out).

Then the verdict (``judge``): ``rollback`` on any false support of the canary, or on a pass rate
below the baseline's by more than the margin once both arms have the minimum paragraphs;
``promote`` when the canary has earned it (both arms at the minimum, no false support, pass rate
within the margin); ``watching`` otherwise.

The figures aggregate across tenants but hold metadata only (counts, rates, costs): deployments are
workbench-wide. Paragraphs of the golden tenant are left out: a golden run pins its versions itself
and would otherwise count as canary traffic.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select
from sqlalchemy.orm import Session

from core.models import FalseSupportReport, LlmUsageEvent, ParagraphVersion, SentenceCheck, Tenant, table_of
from core.tenancy import GOLDEN_TENANT_SLUG

ROLLBACK, PROMOTE, WATCHING = "rollback", "promote", "watching"
VERDICTS = (ROLLBACK, PROMOTE, WATCHING)
"""Paragraphs of this tenant (the golden runs') are never canary or baseline traffic."""

_PV = table_of(ParagraphVersion)
_SC = table_of(SentenceCheck)
_FS = table_of(FalseSupportReport)
_U = table_of(LlmUsageEvent)
_T = table_of(Tenant)


@dataclass(frozen=True)
class ArmFigures:
    """One side of the comparison: a prompt version's paragraphs since the canary started."""

    version: str
    paragraphs: int = 0
    verified: int = 0
    false_supports: int = 0
    cost_usd: float | None = None
    """Every call of these paragraphs' traces; None when no call was priced."""
    latency_p50_ms: float | None = None
    """Median latency of the agent's own calls under this version; None without calls."""

    @property
    def pass_rate(self) -> float | None:
        """Share of paragraphs saved as verified; None without paragraphs."""
        return self.verified / self.paragraphs if self.paragraphs else None

    @property
    def cost_per_paragraph(self) -> float | None:
        return self.cost_usd / self.paragraphs if self.paragraphs and self.cost_usd is not None else None

    def figures(self) -> dict[str, Any]:
        """Plain values for the audit log and the page."""
        return {**asdict(self), "pass_rate": self.pass_rate, "cost_per_paragraph": self.cost_per_paragraph}


@dataclass(frozen=True)
class CanaryReport:
    """A canary against its baseline, and what the figures say to do."""

    agent: str
    deployment_id: int
    share: float
    since: datetime
    canary: ArmFigures
    baseline: ArmFigures
    verdict: str
    """rollback, promote or watching."""
    reason: str
    """The verdict in words, with the figures that decided it."""
    min_paragraphs: int
    margin: float

    def figures(self) -> dict[str, Any]:
        """What decided, as plain values (the audit entry of an automatic rollback carries these)."""
        return {
            "agent": self.agent,
            "deployment_id": self.deployment_id,
            "share": self.share,
            "since": self.since.isoformat(),
            "verdict": self.verdict,
            "reason": self.reason,
            "min_paragraphs": self.min_paragraphs,
            "margin": self.margin,
            "canary": self.canary.figures(),
            "baseline": self.baseline.figures(),
        }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def judge(canary: ArmFigures, baseline: ArmFigures, *, min_paragraphs: int, margin: float) -> tuple[str, str]:
    """The verdict and its reason, from the figures alone."""
    if canary.false_supports:
        return ROLLBACK, (
            f"{canary.false_supports} false support(s) reported on {canary.paragraphs} canary paragraph(s) of "
            f"{canary.version}; a canary may have none"
        )
    if canary.paragraphs < min_paragraphs or baseline.paragraphs < min_paragraphs:
        return WATCHING, (
            f"{canary.paragraphs} canary and {baseline.paragraphs} baseline paragraphs so far; "
            f"each needs {min_paragraphs} before pass rates are compared"
        )
    c_rate, b_rate = canary.pass_rate or 0.0, baseline.pass_rate or 0.0
    rates = f"pass rate {_pct(c_rate)} ({canary.version}) vs {_pct(b_rate)} ({baseline.version})"
    if c_rate < b_rate - margin:
        return ROLLBACK, f"{rates}: below the baseline by more than the margin of {margin:.0%}"
    return PROMOTE, f"{rates}, within the margin of {margin:.0%}, and no false support: ready to promote"


def _connection(db: Connection | Session) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def measure(
    db: Connection | Session, *, agent: str, canary_version: str, baseline_version: str, since: datetime
) -> tuple[ArmFigures, ArmFigures]:
    """The canary's and the baseline's figures over paragraph versions created since ``since``."""
    connection = _connection(db)
    label = _PV.c.prompt_versions[agent].as_string()
    golden = select(_T.c.id).where(_T.c.slug == GOLDEN_TENANT_SLUG).scalar_subquery()
    scope: list[ColumnElement[bool]] = [
        _PV.c.created_at >= since,
        label.in_([canary_version, baseline_version]),
        _PV.c.tenant_id.is_distinct_from(golden),
    ]
    counts = {
        str(v): (int(n), int(ok or 0))
        for v, n, ok in connection.execute(
            select(label, func.count(), func.sum(case((_PV.c.status == "verified", 1), else_=0)))
            .where(*scope)
            .group_by(label)
        )
    }
    false_supports = {
        str(v): int(n)
        for v, n in connection.execute(
            select(label, func.count(func.distinct(_FS.c.sentence_check_id)))
            .select_from(_FS)
            .join(_SC, (_SC.c.id == _FS.c.sentence_check_id) & (_SC.c.tenant_id == _FS.c.tenant_id))
            .join(_PV, (_PV.c.id == _SC.c.version_id) & (_PV.c.tenant_id == _SC.c.tenant_id))
            .where(*scope)
            .group_by(label)
        )
    }
    by_trace = (_U.c.trace_id == _PV.c.trace_id) & (_U.c.tenant_id == _PV.c.tenant_id)
    costs = {
        str(v): (float(c) if c is not None else None)
        for v, c in connection.execute(
            select(label, func.sum(_U.c.cost_usd)).select_from(_U).join(_PV, by_trace).where(*scope).group_by(label)
        )
    }
    latencies: dict[str, list[float]] = {}
    for v, ms in connection.execute(
        select(label, _U.c.latency_ms)
        .select_from(_U)
        .join(_PV, by_trace)
        .where(*scope, _U.c.agent == agent, _U.c.prompt_version == label, _U.c.cache_hit.is_(False))
    ):
        latencies.setdefault(str(v), []).append(float(ms or 0.0))

    def arm(version: str) -> ArmFigures:
        paragraphs, verified = counts.get(version, (0, 0))
        times = latencies.get(version)
        return ArmFigures(
            version,
            paragraphs,
            verified,
            false_supports.get(version, 0),
            costs.get(version),
            statistics.median(times) if times else None,
        )

    return arm(canary_version), arm(baseline_version)


def report(
    db: Connection | Session,
    *,
    agent: str,
    deployment_id: int,
    canary_version: str,
    baseline_version: str,
    share: float,
    since: datetime,
    min_paragraphs: int,
    margin: float,
) -> CanaryReport:
    """Measure and judge one canary."""
    canary, baseline = measure(
        db, agent=agent, canary_version=canary_version, baseline_version=baseline_version, since=since
    )
    verdict, reason = judge(canary, baseline, min_paragraphs=min_paragraphs, margin=margin)
    return CanaryReport(agent, deployment_id, share, since, canary, baseline, verdict, reason, min_paragraphs, margin)


def served_by(prompt_versions: Mapping[str, Any], *, agent: str, version: str) -> bool:
    """Whether a paragraph version with these ``prompt_versions`` was made with ``agent``'s ``version``."""
    return str(prompt_versions.get(agent, "")) == version
