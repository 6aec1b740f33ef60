"""The seed's go-live criteria with live status: read once (``snapshot``), judged by a pure function
(``judge``), shown on the Runbook page.

==========================  =============================================================================
criterion                   passes when
==========================  =============================================================================
verification_gates          every agent's serving prompt version is pinned by an active deployment and
                            passed the release gate (a passing golden run of that exact file); no
                            paragraph version marked verified holds an unsupported sentence; and no false
                            support was reported in the last ``FALSE_SUPPORT_DAYS`` days
cost_bounded                the per-paragraph cap (``BREAKER_PARAGRAPH_COST_USD``) and every token budget
                            are set, and the max (so also the P95) cost of a paragraph run over the last
                            ``COST_DAYS`` days is within the cap
dashboards_present          the Costs, Trajectories and Operations pages are in the navigation table and
                            their files exist, and no alert rule is turned off in a workspace in scope
kill_switch_tested          a passing ``kill-switch`` drill no older than ``drill_max_age_days``
release_check_passed        the newest ``python -m core release check`` passed
==========================  =============================================================================

False-support reports have no open or closed state in the data model, so every report of the last
``FALSE_SUPPORT_DAYS`` days counts as open: a report ages out rather than being closed by hand.

Prompt deployments, drills and release checks are workbench-wide. What is tenant data (paragraph
versions, false-support reports, usage costs, alert rules) is read for the viewer's own workspace,
or for every workspace when the viewer is an admin (as the Costs page compares them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from core import alerts, authz, deployments, prompts, tenant_budgets
from core.authz import Permission
from core.db import as_utc
from core.models import (
    Drill,
    FalseSupportReport,
    LlmUsageEvent,
    ParagraphVersion,
    ReleaseCheck,
    SentenceCheck,
    Tenant,
    table_of,
    utcnow,
)
from core.pages_spec import PAGES
from core.settings import PROJECT_ROOT, Settings, get_settings
from core.tenancy import Identity

FALSE_SUPPORT_DAYS = 30
"""How far back a false-support report keeps the verification gates failing, days."""
COST_DAYS = 7
"""Window of paragraph runs the cost criterion measures, days."""
KILL_SWITCH_DRILL = "kill-switch"
"""``Drill.kind`` that ``python -m core drill kill-switch`` records."""
DASHBOARD_PAGES = ("pages/costs.py", "pages/trajectories.py", "pages/operations.py")
"""The seed's dashboards: costs, trajectories, operations (health, alerts, SLOs)."""

CRITERIA: dict[str, str] = {
    "verification_gates": "Verification gates enforced",
    "cost_bounded": "Cost per paragraph bounded",
    "dashboards_present": "Dashboards present",
    "kill_switch_tested": "Kill switch tested",
    "release_check_passed": "Release check passed",
}
"""Every criterion by key, in the order the page shows them."""

_U = table_of(LlmUsageEvent)


# What is read --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentPin:
    """What serves one agent, and whether the release gate let it."""

    agent: str
    version: str
    deployed: bool
    """An active deployment row names the version (False: the shipped default serves, unpinned)."""
    golden_run_id: int | None
    """The passing golden run of this exact file, None when the gate would refuse it."""
    problem: str = ""
    """Why the gate refuses it, in words to act on ("" when it passed)."""


@dataclass(frozen=True)
class CostFigures:
    runs: int
    """Paragraph runs (traces with a paragraph) with a priced call in the window."""
    max_usd: float | None
    p95_usd: float | None
    """Nearest rank: the smallest run cost with at least 95 % of the runs at or under it."""
    unpriced_runs: int
    """Runs with a call to a model without a price: their cost reads low."""


@dataclass(frozen=True)
class PagePresence:
    path: str
    listed: bool
    exists: bool


@dataclass(frozen=True)
class DrillRecord:
    started_at: datetime
    finished_at: datetime | None
    actor: str

    @property
    def at(self) -> datetime:
        return self.finished_at or self.started_at


@dataclass(frozen=True)
class ReleaseRecord:
    at: datetime
    environment: str
    passed: bool
    actor: str
    failed_items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """Everything the criteria judge, read at ``now``."""

    now: datetime
    workspaces: int
    """How many workspaces the tenant figures cover (the viewer's, or all for an admin)."""
    pins: tuple[AgentPin, ...]
    verified_with_unsupported: int
    false_supports: int
    cap_usd: float
    token_budgets: Mapping[str, int]
    costs: CostFigures
    pages: tuple[PagePresence, ...]
    disabled_rules: tuple[str, ...]
    """``workspace: rule title`` of every alert rule turned off in scope."""
    drill: DrillRecord | None
    drill_max_age_days: float
    release: ReleaseRecord | None


def _scope(session: Session, viewer: Identity) -> list[tuple[int, str]]:
    query = select(Tenant.id, Tenant.slug).order_by(Tenant.id)
    if viewer.role != authz.ADMIN:
        query = query.where(Tenant.id == viewer.tenant_id)
    return [(int(i), str(s)) for i, s in session.execute(query)]


def _pin(session: Session, record: deployments.AgentDeployment) -> AgentPin:
    version, deployed = record.active_version, record.active is not None
    try:
        gate = deployments.gate_check(session, agent=record.agent, version=version)
    except prompts.PromptError as error:  # a changed or missing file can never pass the gate
        return AgentPin(record.agent, version, deployed, None, str(error))
    return AgentPin(record.agent, version, deployed, gate.passing_run_id, "" if gate.passed else gate.message)


def _verified_with_unsupported(session: Session, tenant_ids: Sequence[int]) -> int:
    unsupported = exists().where(
        SentenceCheck.version_id == ParagraphVersion.id,
        SentenceCheck.tenant_id == ParagraphVersion.tenant_id,
        SentenceCheck.verdict == "unsupported",
    )
    return int(
        session.scalar(
            select(func.count()).where(
                ParagraphVersion.tenant_id.in_(tenant_ids), ParagraphVersion.status == "verified", unsupported
            )
        )
        or 0
    )


def _false_supports(session: Session, tenant_ids: Sequence[int], since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                FalseSupportReport.tenant_id.in_(tenant_ids), FalseSupportReport.created_at > since
            )
        )
        or 0
    )


def _costs(session: Session, tenant_ids: Sequence[int], since: datetime, now: datetime) -> CostFigures:
    runs = (
        select(
            func.sum(_U.c.cost_usd).label("spend"),
            func.count().filter(_U.c.cost_usd.is_(None)).label("unpriced"),
        )
        .where(
            _U.c.tenant_id.in_(tenant_ids),
            _U.c.paragraph_id.is_not(None),
            and_(_U.c.created_at > since, _U.c.created_at <= now),
        )
        .group_by(_U.c.tenant_id, _U.c.trace_id)
        .subquery()
    )
    priced = runs.c.spend.is_not(None)
    ranked = (
        select(
            runs.c.spend,
            func.row_number().over(order_by=runs.c.spend).label("rank"),
            func.count().over().label("n"),
        )
        .where(priced)
        .subquery()
    )
    # Nearest rank in integers, so SQLite needs no percentile function (as core.slo does).
    p95 = session.scalar(select(func.min(ranked.c.spend)).where(ranked.c.rank * 100 >= ranked.c.n * 95))
    count, top, unpriced = session.execute(
        select(
            func.count().filter(priced),
            func.max(runs.c.spend),
            func.count().filter(runs.c.unpriced > 0),
        )
    ).one()
    return CostFigures(
        int(count or 0),
        None if top is None else float(top),
        None if p95 is None else float(p95),
        int(unpriced or 0),
    )


def _disabled_rules(session: Session, scope: Sequence[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(
        f"{slug}: {setting.rule.title}"
        for tenant_id, slug in scope
        for setting in alerts.rule_settings(session, tenant_id=tenant_id)
        if not setting.enabled
    )


def _drill(session: Session) -> DrillRecord | None:
    row = session.scalars(
        select(Drill)
        .where(Drill.kind == KILL_SWITCH_DRILL, Drill.passed.is_(True))
        .order_by(func.coalesce(Drill.finished_at, Drill.started_at).desc(), Drill.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return DrillRecord(as_utc(row.started_at), as_utc(row.finished_at) if row.finished_at else None, row.actor)


def _failed_items(results: Any) -> tuple[str, ...]:
    if not isinstance(results, list):
        return ()
    return tuple(str(r.get("item", "?")) for r in results if isinstance(r, Mapping) and not r.get("passed", False))


def _release(session: Session) -> ReleaseRecord | None:
    row = session.scalars(
        select(ReleaseCheck).order_by(ReleaseCheck.at.desc(), ReleaseCheck.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return ReleaseRecord(as_utc(row.at), row.environment, bool(row.passed), row.actor, _failed_items(row.results))


_BUDGET_NAMES = {
    "librarian": "librarian per chunk",
    "writer": "writer",
    "verifier": "verifier",
    "rewriter": "rewriter",
    "paragraph": "paragraph",
}


def _token_budgets(session: Session, tenant_ids: Sequence[int], settings: Settings) -> dict[str, int]:
    """Each budget as the most generous covered workspace has it (``core.tenant_budgets``): the
    bound a run can reach, not the environment's default alone."""
    connection = session.connection()
    limits = [tenant_budgets.limits(connection, tenant_id, settings) for tenant_id in tenant_ids]
    if not limits:
        limits = [tenant_budgets.defaults(settings)]
    return {name: max(limit.tokens[key] for limit in limits) for key, name in _BUDGET_NAMES.items()}


def snapshot(
    session: Session, *, viewer: Identity, settings: Settings | None = None, now: datetime | None = None
) -> Snapshot:
    """Read what the criteria judge. Tenant figures cover the viewer's workspace, or every one for an
    admin. Requires ``VIEW_OPERATIONS`` (ops and admins)."""
    authz.require(viewer, Permission.VIEW_OPERATIONS)
    settings = settings or get_settings()
    moment = as_utc(now) if now else utcnow()
    scope = _scope(session, viewer)
    tenant_ids = [tenant_id for tenant_id, _slug in scope]
    return Snapshot(
        now=moment,
        workspaces=len(scope),
        pins=tuple(_pin(session, record) for record in deployments.status(session, history=0)),
        verified_with_unsupported=_verified_with_unsupported(session, tenant_ids),
        false_supports=_false_supports(session, tenant_ids, moment - timedelta(days=FALSE_SUPPORT_DAYS)),
        cap_usd=settings.breaker_paragraph_cost_usd,
        token_budgets=_token_budgets(session, tenant_ids, settings),
        costs=_costs(session, tenant_ids, moment - timedelta(days=COST_DAYS), moment),
        pages=tuple(
            PagePresence(path, any(p.path == path for p in PAGES), (PROJECT_ROOT / path).is_file())
            for path in DASHBOARD_PAGES
        ),
        disabled_rules=_disabled_rules(session, scope),
        drill=_drill(session),
        drill_max_age_days=settings.drill_max_age_days,
        release=_release(session),
    )


# How it is judged ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    key: str
    title: str
    passed: bool
    evidence: tuple[str, ...]
    """What was found, one line each (figures, dates, ids)."""
    action: str = ""
    """What to do when it fails ("" when it passes)."""
    commands: tuple[str, ...] = field(default_factory=tuple)
    """Commands the action names, to copy."""


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _judge_gates(s: Snapshot) -> Criterion:
    evidence, problems, runs, activations, hints = [], [], [], [], []
    for pin in s.pins:
        if not pin.deployed:
            problems.append(f"{pin.agent} serves {pin.version} without a deployment (unpinned)")
            activations.append(f"python -m core prompts activate {pin.agent} {pin.version}")
        if pin.golden_run_id is None:
            problems.append(pin.problem or f"{pin.agent} {pin.version} has no passing golden run")
            runs.append(f"python -m core golden run --prompt {pin.agent}={pin.version}")
        if pin.deployed and pin.golden_run_id is not None:
            evidence.append(f"{pin.agent} {pin.version}: active, passed golden run #{pin.golden_run_id}")
    if runs or activations:
        hints.append("pin each agent to a version that passed its golden run (commands below)")
    if s.verified_with_unsupported:
        problems.append(
            f"{s.verified_with_unsupported} paragraph version(s) marked verified hold an unsupported sentence"
        )
        hints.append("a verified version must never hold one: freeze generation and scope its trace")
    else:
        evidence.append("no paragraph version marked verified holds an unsupported sentence")
    if s.false_supports:
        problems.append(f"{s.false_supports} false support report(s) in the last {FALSE_SUPPORT_DAYS} days")
        hints.append(f"follow the false support procedure; a report counts for {FALSE_SUPPORT_DAYS} days")
    else:
        evidence.append(f"no false support reported in the last {FALSE_SUPPORT_DAYS} days")
    action = f"{'; '.join(problems)}. To do: {'; '.join(hints)}." if problems else ""
    return Criterion(
        "verification_gates",
        CRITERIA["verification_gates"],
        not problems,
        tuple(problems + evidence),
        action,
        tuple(runs + activations),
    )


def _usd(value: float | None) -> str:
    return "–" if value is None else alerts.usd(value)


def _judge_cost(s: Snapshot) -> Criterion:
    c, problems = s.costs, []
    unset = [name for name, tokens in s.token_budgets.items() if tokens <= 0]
    if s.cap_usd <= 0:
        problems.append("no per-paragraph cap: set BREAKER_PARAGRAPH_COST_USD")
    if unset:
        problems.append(f"token budgets not set: {', '.join(unset)}")
    if c.max_usd is not None and round(c.max_usd, 9) > round(s.cap_usd, 9):
        problems.append(f"a paragraph run cost {_usd(c.max_usd)}, over the {_usd(s.cap_usd)} cap")
    budgets = ", ".join(f"{name} {tokens:,}" for name, tokens in s.token_budgets.items())
    evidence = [
        f"cap {_usd(s.cap_usd)} per paragraph run; token budgets: {budgets}",
        f"last {COST_DAYS} days: {c.runs} priced paragraph run(s), max {_usd(c.max_usd)}, P95 {_usd(c.p95_usd)}"
        + (f" across {s.workspaces} workspaces" if s.workspaces > 1 else ""),
    ]
    if not c.runs:
        evidence.append("no paragraph run to measure yet: the cap and budgets bound the first ones")
    if c.unpriced_runs:
        evidence.append(f"{c.unpriced_runs} run(s) called a model without a price: their cost reads low")
    action = ""
    if problems:
        action = (
            "; ".join(problems) + ". Find the dear runs on the Costs and Trajectories pages and route or roll back."
        )
    return Criterion(
        "cost_bounded",
        CRITERIA["cost_bounded"],
        not problems,
        tuple(problems + evidence),
        action,
        ("python -m core routing show",) if problems else (),
    )


def _judge_dashboards(s: Snapshot) -> Criterion:
    problems = [
        f"{p.path} is {'not in the navigation' if not p.listed else 'missing'}"
        for p in s.pages
        if not (p.listed and p.exists)
    ]
    problems += [f"alert rule off in {rule}" for rule in s.disabled_rules]
    evidence = [f"pages present: {', '.join(p.path for p in s.pages if p.listed and p.exists) or 'none'}"]
    evidence.append(
        f"{len(alerts.RULES)} alert rules on in {s.workspaces} workspace(s)"
        if not s.disabled_rules
        else f"{len(s.disabled_rules)} alert rule(s) off"
    )
    action = ""
    if problems:
        action = (
            "; ".join(problems) + ". Turn the rules back on on the Operations page; a missing page is a broken deploy."
        )
    return Criterion(
        "dashboards_present", CRITERIA["dashboards_present"], not problems, tuple(problems + evidence), action
    )


def _judge_drill(s: Snapshot) -> Criterion:
    command = ("python -m core drill kill-switch",)
    title, key = CRITERIA["kill_switch_tested"], "kill_switch_tested"
    if s.drill is None:
        return Criterion(
            key,
            title,
            False,
            ("no passing kill-switch drill recorded",),
            "Run the kill-switch drill: `python -m core drill kill-switch`.",
            command,
        )
    age = s.now - s.drill.at
    by = f" by {s.drill.actor}" if s.drill.actor else ""
    line = f"last passing drill {_when(s.drill.at)}{by} ({age.days} day(s) ago; needed within {s.drill_max_age_days:g})"
    if age > timedelta(days=s.drill_max_age_days):
        return Criterion(
            key,
            title,
            False,
            (line,),
            f"The last passing drill is older than {s.drill_max_age_days:g} days: "
            "run `python -m core drill kill-switch`.",
            command,
        )
    return Criterion(key, title, True, (line,))


def _judge_release(s: Snapshot) -> Criterion:
    title, key, command = CRITERIA["release_check_passed"], "release_check_passed", ("python -m core release check",)
    r = s.release
    if r is None:
        return Criterion(
            key, title, False, ("no release check recorded",), "Run `python -m core release check`.", command
        )
    by = f" by {r.actor}" if r.actor else ""
    line = f"newest check {_when(r.at)} in {r.environment}{by}: {'passed' if r.passed else 'failed'}"
    if r.passed:
        return Criterion(key, title, True, (line,))
    failed = ", ".join(r.failed_items) or "see its table"
    return Criterion(
        key,
        title,
        False,
        (line, f"failed items: {failed}"),
        f"Fix the failed items ({failed}) and run `python -m core release check` again.",
        command,
    )


def judge(s: Snapshot) -> list[Criterion]:
    """Every criterion of ``CRITERIA``, in order, judged from the snapshot alone."""
    return [_judge_gates(s), _judge_cost(s), _judge_dashboards(s), _judge_drill(s), _judge_release(s)]


def status(
    session: Session, *, viewer: Identity, settings: Settings | None = None, now: datetime | None = None
) -> list[Criterion]:
    """The go-live criteria as they stand now for ``viewer`` (see ``snapshot``)."""
    return judge(snapshot(session, viewer=viewer, settings=settings, now=now))
