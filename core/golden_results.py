"""The read side of golden runs: list them, open one with its cases, find a prompt version's runs,
compare two runs case by case and metric by metric, and their history over time.

Golden runs are workbench-wide (they gate a release for every tenant), so nothing here takes a
tenant. Results are plain dataclasses, usable after the session has closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFoundError
from core.models import GoldenCaseResult, GoldenRun

FINISHED = ("passed", "failed")
"""Statuses of a run that went through the whole set (``running`` has not, ``error`` broke off)."""


@dataclass(frozen=True)
class RunSummary:
    """One golden run: what it ran under and its figures."""

    id: int
    status: str
    label: str
    provider: str
    prompt_versions: dict[str, str]
    prompt_hashes: dict[str, str]
    models: dict[str, str]
    triggered_by: str
    cases_total: int
    cases_passed: int
    expectations_total: int
    expectations_passed: int
    sentence_support_rate: float | None
    paragraph_verification_rate: float | None
    false_supports: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_ms: float
    failing_cases: list[Any]
    error: str
    started_at: datetime
    finished_at: datetime | None

    @property
    def pass_rate(self) -> float | None:
        """Share of cases that passed every expectation (None for a run without cases)."""
        return self.cases_passed / self.cases_total if self.cases_total else None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def version_of(self, agent: str) -> str:
        return str(self.prompt_versions.get(agent, "?"))

    @property
    def versions_label(self) -> str:
        """``librarian v1 · writer v2 · …``: the prompt versions the run was made with."""
        return " · ".join(f"{agent} {version}" for agent, version in sorted(self.prompt_versions.items()))

    @property
    def title(self) -> str:
        """How a run is named in a picker: number, when, status, label or versions."""
        what = self.label or self.versions_label or "no versions recorded"
        return f"#{self.id} · {self.started_at:%Y-%m-%d %H:%M} · {self.status} · {what}"


@dataclass(frozen=True)
class CaseView:
    """One case of a run: the paragraph, its sentences with verdicts, and each expectation."""

    case_id: str
    passed: bool
    verified: bool
    paragraph_text: str
    sentences: list[dict[str, Any]]
    expectations: list[dict[str, Any]]
    false_supports: int
    sentence_support_rate: float | None
    tokens: int
    cost_usd: float | None
    latency_ms: float
    trace_id: str | None


@dataclass(frozen=True)
class RunDetail:
    run: RunSummary
    cases: list[CaseView] = field(default_factory=list)

    def case(self, case_id: str) -> CaseView | None:
        return next((c for c in self.cases if c.case_id == case_id), None)


def _summary(row: GoldenRun) -> RunSummary:
    return RunSummary(
        id=row.id,
        status=row.status,
        label=row.label or "",
        provider=row.provider,
        prompt_versions={str(k): str(v) for k, v in (row.prompt_versions or {}).items()},
        prompt_hashes={str(k): str(v) for k, v in (row.prompt_hashes or {}).items()},
        models={str(k): str(v) for k, v in (row.models or {}).items()},
        triggered_by=row.triggered_by or "",
        cases_total=row.cases_total or 0,
        cases_passed=row.cases_passed or 0,
        expectations_total=row.expectations_total or 0,
        expectations_passed=row.expectations_passed or 0,
        sentence_support_rate=row.sentence_support_rate,
        paragraph_verification_rate=row.paragraph_verification_rate,
        false_supports=row.false_supports or 0,
        input_tokens=row.input_tokens or 0,
        output_tokens=row.output_tokens or 0,
        cost_usd=row.cost_usd,
        latency_ms=row.latency_ms or 0.0,
        failing_cases=list(row.failing_cases or []),
        error=row.error or "",
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _case(row: GoldenCaseResult) -> CaseView:
    return CaseView(
        case_id=row.case_id,
        passed=bool(row.passed),
        verified=bool(row.verified),
        paragraph_text=row.paragraph_text or "",
        sentences=[dict(s) for s in row.sentences or []],
        expectations=[dict(e) for e in row.expectations or []],
        false_supports=row.false_supports or 0,
        sentence_support_rate=row.sentence_support_rate,
        tokens=(row.input_tokens or 0) + (row.output_tokens or 0),
        cost_usd=row.cost_usd,
        latency_ms=row.latency_ms or 0.0,
        trace_id=row.trace_id,
    )


def list_runs(session: Session, *, limit: int = 200, finished_only: bool = False) -> list[RunSummary]:
    """The most recent golden runs, newest first."""
    query = select(GoldenRun).order_by(GoldenRun.started_at.desc(), GoldenRun.id.desc()).limit(limit)
    if finished_only:
        query = query.where(GoldenRun.status.in_(FINISHED))
    return [_summary(row) for row in session.scalars(query)]


def get_run(session: Session, *, run_id: int) -> RunDetail:
    """A run with its cases in case order; NotFoundError when there is no such run."""
    row = session.get(GoldenRun, run_id)
    if row is None:
        raise NotFoundError(f"There is no golden run #{run_id}; pick one from the list of runs.")
    cases = session.scalars(
        select(GoldenCaseResult).where(GoldenCaseResult.run_id == run_id).order_by(GoldenCaseResult.case_id)
    )
    return RunDetail(_summary(row), [_case(c) for c in cases])


def runs_for(
    session: Session,
    *,
    agent: str,
    version: str | None = None,
    sha256: str | None = None,
    limit: int = 200,
    finished_only: bool = True,
) -> list[RunSummary]:
    """Runs (newest first) made with ``agent``'s prompt at ``version`` and/or with the file of ``sha256``.

    The match is on the JSON the run recorded, done here rather than in SQL: golden runs are few
    (one per release check), and JSON paths differ between SQLite and PostgreSQL.
    """
    matches = []
    for run in list_runs(session, limit=limit, finished_only=finished_only):
        if version is not None and run.prompt_versions.get(agent) != version:
            continue
        if sha256 is not None and run.prompt_hashes.get(agent) != sha256:
            continue
        matches.append(run)
    return matches


def latest_for(
    session: Session, *, agent: str, versions: Mapping[str, str], limit: int = 500
) -> dict[str, RunSummary | None]:
    """For each of ``agent``'s versions (version -> sha256 of its file), its newest finished run of
    that exact file, or None: one query for all of them."""
    found: dict[str, RunSummary | None] = dict.fromkeys(versions)
    for run in list_runs(session, limit=limit, finished_only=True):
        version = run.prompt_versions.get(agent)
        if version in found and found[version] is None and run.prompt_hashes.get(agent) == versions[version]:
            found[version] = run
    return found


# Comparing two runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One figure of two runs. ``higher_is_better`` says which way the difference is an improvement
    (None: neither, e.g. tokens spent are shown but not judged)."""

    name: str
    a: float | None
    b: float | None
    higher_is_better: bool | None
    kind: str = "count"
    """How to show it: ``count``, ``rate`` (0..1), ``usd`` or ``ms``."""

    @property
    def difference(self) -> float | None:
        """B minus A, or None when either is missing."""
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def verdict(self) -> str:
        """``better``, ``worse`` or ``same`` for B against A (``same`` also when it cannot be judged)."""
        diff = self.difference
        if diff is None or abs(diff) < 1e-12 or self.higher_is_better is None:
            return "same"
        return "better" if (diff > 0) == self.higher_is_better else "worse"


@dataclass(frozen=True)
class CasePair:
    case_id: str
    a: CaseView | None
    b: CaseView | None

    @property
    def differs(self) -> bool:
        """Whether the two runs reached a different outcome or text on this case."""
        if self.a is None or self.b is None:
            return True
        return (self.a.passed, self.a.paragraph_text) != (self.b.passed, self.b.paragraph_text)


@dataclass(frozen=True)
class Comparison:
    a: RunSummary
    b: RunSummary
    metrics: list[Metric]
    cases: list[CasePair]


def metrics_of(a: RunSummary, b: RunSummary) -> list[Metric]:
    """The figures a release is judged by, for both runs."""
    return [
        Metric("Cases passed", a.cases_passed, b.cases_passed, True),
        Metric("Cases", a.cases_total, b.cases_total, None),
        Metric("Expectations passed", a.expectations_passed, b.expectations_passed, True),
        Metric("Sentence support rate", a.sentence_support_rate, b.sentence_support_rate, True, "rate"),
        Metric(
            "Paragraph verification rate", a.paragraph_verification_rate, b.paragraph_verification_rate, True, "rate"
        ),
        Metric("False supports", a.false_supports, b.false_supports, False),
        Metric("Tokens", a.tokens, b.tokens, False),
        Metric("Cost", a.cost_usd, b.cost_usd, False, "usd"),
        Metric("Latency", a.latency_ms, b.latency_ms, False, "ms"),
    ]


def compare(run_a: RunDetail, run_b: RunDetail) -> Comparison:
    """Two runs case by case (every case of either, in case order) and metric by metric."""
    ids = sorted({c.case_id for c in run_a.cases} | {c.case_id for c in run_b.cases})
    pairs = [CasePair(case_id, run_a.case(case_id), run_b.case(case_id)) for case_id in ids]
    return Comparison(run_a.run, run_b.run, metrics_of(run_a.run, run_b.run), pairs)


# Over time --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPoint:
    run_id: int
    started_at: datetime
    version: str
    """The version of the agent asked about, or every agent's versions when none was."""
    status: str
    pass_rate: float | None
    false_supports: int
    cost_usd: float | None


def history(session: Session, *, agent: str | None = None, limit: int = 200) -> list[HistoryPoint]:
    """Finished runs oldest first, each with the version it ran (of ``agent``, or all versions)."""
    runs = list_runs(session, limit=limit, finished_only=True)
    return [
        HistoryPoint(
            run_id=run.id,
            started_at=run.started_at,
            version=run.version_of(agent) if agent else (run.versions_label or "?"),
            status=run.status,
            pass_rate=run.pass_rate,
            false_supports=run.false_supports,
            cost_usd=run.cost_usd,
        )
        for run in reversed(runs)
    ]
