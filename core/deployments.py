"""Which prompt version serves each agent: the release gate, canaries, promotion and rollback.

Per agent, one ``active`` version (``prompts.DEFAULT_VERSION`` while no deployment names one) and
at most one ``canary``, which serves a deterministic share of paragraphs::

    candidate ──gate──> canary (share) ──promote──> active
                          │                           │
                          └─rollback / retire         └─rollback──> the previous active (or --to)

The release gate: a version may become active or canary only when a golden run with status
``passed`` and no false support ran that exact file, by its sha256 (``core.golden_runner`` stores
``prompt_hashes``; ``prompts.load`` refuses a file that differs from its lock). A rollback target
must have passed it once too, except the shipped ``DEFAULT_VERSION``, which is what serves when no
deployment exists at all.

Rows of ``prompt_deployments`` are never deleted: each step ends one row (``ended_at``, status
``retired`` or ``rolled_back``) and starts another, so what served when stays readable. Canary
rows keep their ``canary_share`` after they end, which tells them apart in the history. Every step
needs ``Permission.MANAGE_PROMPTS`` and is audited (``audit.PROMPT_CHANGED``) in its transaction;
an automatic rollback (``evaluate_canaries``) is the workbench's own step, audited with the figures
that decided it. Promotion stays a person's decision: a wrong rollback costs nothing (the baseline
serves again, nothing stored changes), while a promotion sends every paragraph to the new version,
so someone accountable signs it; ``evaluate_canaries`` reports the canaries ready for it.

Nothing here touches stored paragraph versions or their verdicts: a rollback changes which version
drafts the *next* paragraph, never what an earlier one said.

Deployments are workbench-wide (not per tenant), like the prompt files they name.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from core import audit, authz, canary, prompts
from core.authz import Permission
from core.canary import CanaryReport
from core.db import as_utc, session_scope
from core.errors import DeploymentError, ReleaseGateError
from core.models import GoldenRun, PromptDeployment, table_of, utcnow
from core.settings import Settings, get_settings
from core.tenancy import Identity

log = logging.getLogger(__name__)
_D = table_of(PromptDeployment)
_G = table_of(GoldenRun)

ACTIVE, CANARY, RETIRED, ROLLED_BACK = "active", "canary", "retired", "rolled_back"
SHARE_BUCKETS = 10_000
"""A canary's share is applied in steps of 1/SHARE_BUCKETS of paragraphs."""
GATE_RUNS_SCANNED = 500
"""The newest golden runs the gate looks through for one of the exact file."""

__all__ = [
    "AgentDeployment",
    "CanaryReport",
    "Decision",
    "DeploymentRecord",
    "GateCheck",
    "activate",
    "active_versions",
    "after_false_support",
    "canary_report",
    "evaluate_canaries",
    "gate_check",
    "in_canary",
    "pins_for",
    "promote",
    "retire",
    "rollback",
    "start_canary",
    "status",
]


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentRecord:
    """One ``prompt_deployments`` row as read."""

    id: int
    agent: str
    version: str
    sha256: str
    status: str
    """active or canary while serving; retired or rolled_back once ended."""
    canary_share: float | None
    """Set on canary rows (kept after they end)."""
    golden_run_id: int | None
    reason: str
    created_by: str
    created_at: datetime
    ended_at: datetime | None
    ended_reason: str

    @property
    def serving(self) -> bool:
        return self.ended_at is None and self.status in (ACTIVE, CANARY)

    @property
    def was_canary(self) -> bool:
        return self.canary_share is not None


@dataclass(frozen=True)
class AgentDeployment:
    """What serves one agent now, and its history (newest first)."""

    agent: str
    active_version: str
    active_sha256: str
    """The sha256 of the active version's file ("" when the file cannot be read)."""
    active: DeploymentRecord | None
    """None while the agent runs on ``prompts.DEFAULT_VERSION`` without any deployment."""
    canary: DeploymentRecord | None
    history: list[DeploymentRecord] = field(default_factory=list)

    @property
    def canary_version(self) -> str | None:
        return self.canary.version if self.canary else None

    @property
    def canary_share(self) -> float | None:
        return self.canary.canary_share if self.canary else None

    @property
    def canary_since(self) -> datetime | None:
        return self.canary.created_at if self.canary else None


def _record(row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        int(row.id),
        row.agent,
        row.version,
        row.sha256,
        row.status,
        row.canary_share,
        row.golden_run_id,
        row.reason or "",
        row.created_by or "",
        as_utc(row.created_at),
        as_utc(row.ended_at) if row.ended_at is not None else None,
        row.ended_reason or "",
    )


def _connection(db: Connection | Session) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _serving(db: Connection | Session, *, agent: str | None = None) -> list[DeploymentRecord]:
    """Rows serving now (newest first), of one agent or of all."""
    query = select(_D).where(_D.c.ended_at.is_(None), _D.c.status.in_((ACTIVE, CANARY))).order_by(_D.c.id.desc())
    if agent is not None:
        query = query.where(_D.c.agent == agent)
    return [_record(r) for r in _connection(db).execute(query)]


def _current(rows: list[DeploymentRecord], agent: str, status: str) -> DeploymentRecord | None:
    # Newest first: should two rows ever serve at once (two first activations racing), the newer wins.
    return next((r for r in rows if r.agent == agent and r.status == status), None)


def active_versions(db: Connection | Session) -> dict[str, str]:
    """The active version of every agent (``prompts.DEFAULT_VERSION`` where none is deployed)."""
    rows = _serving(db)
    out = {}
    for agent in prompts.AGENTS:
        active = _current(rows, agent, ACTIVE)
        out[agent] = active.version if active else prompts.DEFAULT_VERSION
    return out


def _sha(agent: str, version: str, settings: Settings) -> str:
    return prompts.load(agent, version, settings.prompts_dir).sha256


def status(db: Connection | Session, *, history: int = 20) -> list[AgentDeployment]:
    """Per agent: the active version and its sha256, the canary if any, and the last ``history`` rows."""
    settings = get_settings()
    connection = _connection(db)
    serving = _serving(connection)
    out = []
    for agent in prompts.AGENTS:
        active = _current(serving, agent, ACTIVE)
        version = active.version if active else prompts.DEFAULT_VERSION
        try:
            sha = active.sha256 if active else _sha(agent, version, settings)
        except prompts.PromptError:  # a missing default file: the page still shows every other agent
            sha = ""
        rows = connection.execute(select(_D).where(_D.c.agent == agent).order_by(_D.c.id.desc()).limit(history))
        out.append(
            AgentDeployment(agent, version, sha, active, _current(serving, agent, CANARY), [_record(r) for r in rows])
        )
    return out


def in_canary(*, deployment_id: int, paragraph_id: int, share: float) -> bool:
    """Whether the canary ``deployment_id`` serves ``paragraph_id``: the same answer every time, for
    a share of paragraph ids close to ``share``, and a different draw for each canary."""
    digest = hashlib.sha256(f"{deployment_id}:{paragraph_id}".encode()).hexdigest()
    return int(digest, 16) % SHARE_BUCKETS < round(share * SHARE_BUCKETS)


def pins_for(db: Connection | Session, *, paragraph_id: int | None) -> dict[str, str]:
    """The version each agent uses for ``paragraph_id``: its canary for the canary's share of
    paragraphs, the active version otherwise (and always when there is no paragraph). One SELECT;
    the gateway reads it once per run."""
    rows = _serving(db)
    pins = {}
    for agent in prompts.AGENTS:
        active, trial = _current(rows, agent, ACTIVE), _current(rows, agent, CANARY)
        pins[agent] = active.version if active else prompts.DEFAULT_VERSION
        if (
            trial is not None
            and paragraph_id is not None
            and in_canary(deployment_id=trial.id, paragraph_id=paragraph_id, share=trial.canary_share or 0.0)
        ):
            pins[agent] = trial.version
    return pins


# -- the release gate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GateCheck:
    """Whether ``agent``'s ``version`` passed the release gate, and by which golden run."""

    agent: str
    version: str
    sha256: str
    passing_run_id: int | None
    """A golden run that passed with this exact file (the newest such run)."""
    failing_run_id: int | None = None
    """The newest run of this exact file that did not pass, when no run passed."""
    failing_cases: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.passing_run_id is not None

    @property
    def message(self) -> str:
        """What the gate says, in words a person can act on."""
        if self.passed:
            return f"{self.agent} {self.version} passed golden run #{self.passing_run_id}."
        command = f"python -m core golden run --prompt {self.agent}={self.version}"
        text = (
            f"{self.agent} {self.version} (sha256 {self.sha256[:12]}) has no passing golden run of this exact "
            f"file, so it may not serve; run `{command}` first."
        )
        if self.failing_run_id is not None:
            cases = f" (failing cases: {', '.join(self.failing_cases[:5])})" if self.failing_cases else ""
            text += f" Its latest golden run, #{self.failing_run_id}, did not pass{cases}."
        return text


def gate_check(db: Connection | Session, *, agent: str, version: str) -> GateCheck:
    """Look for a passing golden run (status ``passed``, no false support) of this exact file.
    Raises ``PromptError`` for a file that is missing, unlocked or changed since it was locked."""
    sha = _sha(agent, version, get_settings())
    rows = _connection(db).execute(
        select(_G.c.id, _G.c.status, _G.c.false_supports, _G.c.prompt_hashes, _G.c.failing_cases)
        .where(_G.c.status.in_(("passed", "failed", "error")))
        .order_by(_G.c.id.desc())
        .limit(GATE_RUNS_SCANNED)
    )
    failing: Any = None
    for row in rows:
        if (row.prompt_hashes or {}).get(agent) != sha:
            continue
        if row.status == "passed" and not row.false_supports:
            return GateCheck(agent, version, sha, int(row.id))
        failing = failing or row
    if failing is None:
        return GateCheck(agent, version, sha, None)
    cases = tuple(str(c.get("case_id", c) if isinstance(c, Mapping) else c) for c in (failing.failing_cases or []))
    return GateCheck(agent, version, sha, None, int(failing.id), cases)


def _require_gate(db: Connection | Session, *, agent: str, version: str) -> GateCheck:
    check = gate_check(db, agent=agent, version=version)
    if not check.passed:
        raise ReleaseGateError(check.message)
    return check


# -- changing ------------------------------------------------------------------------------------


def _check_agent(agent: str) -> None:
    if agent not in prompts.AGENTS:
        raise DeploymentError(f"Unknown agent {agent!r}; agents are {', '.join(prompts.AGENTS)}.")


def _end(connection: Connection, row: DeploymentRecord, *, status: str, reason: str, now: datetime) -> None:
    """End a serving row; refuses when someone else ended it meanwhile."""
    ended = connection.execute(
        update(_D)
        .where(_D.c.id == row.id, _D.c.ended_at.is_(None))
        .values(status=status, ended_at=now, ended_reason=reason[:2000])
    )
    if ended.rowcount != 1:
        raise DeploymentError(
            f"The {row.agent} deployment changed while you acted ({row.version} is no longer {row.status}); "
            "look at `python -m core prompts status` or reload the page, then try again."
        )


def _start(
    connection: Connection,
    *,
    agent: str,
    version: str,
    sha256: str,
    status: str,
    actor: str,
    reason: str,
    golden_run_id: int | None,
    share: float | None = None,
    now: datetime,
) -> DeploymentRecord:
    values = {
        "agent": agent,
        "version": version,
        "sha256": sha256,
        "status": status,
        "canary_share": share,
        "golden_run_id": golden_run_id,
        "reason": reason[:2000],
        "created_by": actor[:320],
        "created_at": now,
    }
    new_id = connection.execute(_D.insert().values(**values)).inserted_primary_key
    assert new_id is not None  # an INSERT of one row always has one
    return _record(connection.execute(select(_D).where(_D.c.id == new_id[0])).one())


def _audit(
    connection: Connection, actor: Identity | None, *, agent: str, version: str, action: str, **details: Any
) -> None:
    audit.record(
        connection,
        audit.PROMPT_CHANGED,
        actor=actor,
        tenant_id=None,
        subject=f"{agent} {version}",
        details={"action": action, "agent": agent, "version": version, **details},
    )


def activate(session: Session, *, by: Identity, agent: str, version: str, reason: str = "") -> DeploymentRecord:
    """Make ``version`` the agent's active version, after the release gate. The previous active row
    ends (``retired``). Refused while the agent has a canary: promote it or roll it back first."""
    authz.require(by, Permission.MANAGE_PROMPTS)
    _check_agent(agent)
    check = _require_gate(session, agent=agent, version=version)
    connection, now = session.connection(), utcnow()
    serving = _serving(connection, agent=agent)
    active, trial = _current(serving, agent, ACTIVE), _current(serving, agent, CANARY)
    current = active.version if active else prompts.DEFAULT_VERSION
    # Without a row the default serves implicitly; activating it pins it (what production needs),
    # so only an explicit active row of the same version is a no-op.
    if active is not None and version == active.version:
        raise DeploymentError(f"{agent} {version} is already the active version; nothing changed.")
    if trial is not None:
        raise DeploymentError(
            f"{agent} has a canary ({trial.version}); promote it or roll it back before activating another version."
        )
    if active is not None:
        _end(connection, active, status=RETIRED, reason=f"replaced by {version}", now=now)
    row = _start(
        connection,
        agent=agent,
        version=version,
        sha256=check.sha256,
        status=ACTIVE,
        actor=by.name,
        reason=reason.strip(),
        golden_run_id=check.passing_run_id,
        now=now,
    )
    _audit(
        connection,
        by,
        agent=agent,
        version=version,
        action="activate",
        previous=current,
        sha256=check.sha256,
        golden_run_id=check.passing_run_id,
        reason=reason.strip(),
    )
    return row


def start_canary(
    session: Session, *, by: Identity, agent: str, version: str, share: float, reason: str = ""
) -> DeploymentRecord:
    """Let ``version`` serve ``share`` (0 < share <= 1) of paragraphs beside the active version,
    after the release gate. One canary per agent."""
    authz.require(by, Permission.MANAGE_PROMPTS)
    _check_agent(agent)
    if not 0 < share <= 1:
        raise DeploymentError(f"A canary's share is a fraction of paragraphs above 0 and at most 1, not {share:g}.")
    check = _require_gate(session, agent=agent, version=version)
    connection, now = session.connection(), utcnow()
    serving = _serving(connection, agent=agent)
    active, trial = _current(serving, agent, ACTIVE), _current(serving, agent, CANARY)
    current = active.version if active else prompts.DEFAULT_VERSION
    if trial is not None:
        raise DeploymentError(
            f"{agent} already has a canary ({trial.version}, {trial.canary_share:.0%}); promote, roll back or "
            "retire it first."
        )
    if version == current:
        raise DeploymentError(f"{agent} {version} is the active version already; a canary needs another version.")
    row = _start(
        connection,
        agent=agent,
        version=version,
        sha256=check.sha256,
        status=CANARY,
        actor=by.name,
        reason=reason.strip(),
        golden_run_id=check.passing_run_id,
        share=share,
        now=now,
    )
    _audit(
        connection,
        by,
        agent=agent,
        version=version,
        action="canary",
        baseline=current,
        share=share,
        sha256=check.sha256,
        golden_run_id=check.passing_run_id,
        reason=reason.strip(),
    )
    return row


def _canary_of(connection: Connection, agent: str) -> tuple[DeploymentRecord | None, DeploymentRecord]:
    _check_agent(agent)
    serving = _serving(connection, agent=agent)
    trial = _current(serving, agent, CANARY)
    if trial is None:
        raise DeploymentError(f"{agent} has no canary; start one with `python -m core prompts canary {agent} VERSION`.")
    return _current(serving, agent, ACTIVE), trial


def _report(
    connection: Connection, active: DeploymentRecord | None, trial: DeploymentRecord, settings: Settings
) -> CanaryReport:
    return canary.report(
        connection,
        agent=trial.agent,
        deployment_id=trial.id,
        canary_version=trial.version,
        baseline_version=active.version if active else prompts.DEFAULT_VERSION,
        share=trial.canary_share or 0.0,
        since=trial.created_at,
        min_paragraphs=settings.canary_min_paragraphs,
        margin=settings.canary_pass_rate_margin,
    )


def canary_report(db: Connection | Session, *, agent: str) -> CanaryReport:
    """The agent's canary against its baseline since it started (``core.canary``); DeploymentError
    when the agent has no canary."""
    connection = _connection(db)
    active, trial = _canary_of(connection, agent)
    return _report(connection, active, trial, get_settings())


def promote(session: Session, *, by: Identity, agent: str, reason: str = "") -> DeploymentRecord:
    """Make the agent's canary its active version. Refused when the canary's figures call for a rollback."""
    authz.require(by, Permission.MANAGE_PROMPTS)
    connection, now = session.connection(), utcnow()
    active, trial = _canary_of(connection, agent)
    report = _report(connection, active, trial, get_settings())
    if report.verdict == canary.ROLLBACK:
        raise DeploymentError(f"{agent} {trial.version} may not be promoted: {report.reason}. Roll it back instead.")
    _end(connection, trial, status=RETIRED, reason="promoted", now=now)
    if active is not None:
        _end(connection, active, status=RETIRED, reason=f"replaced by {trial.version} (promoted canary)", now=now)
    row = _start(
        connection,
        agent=agent,
        version=trial.version,
        sha256=trial.sha256,
        status=ACTIVE,
        actor=by.name,
        reason=reason.strip() or f"promoted canary #{trial.id}",
        golden_run_id=trial.golden_run_id,
        now=now,
    )
    _audit(
        connection,
        by,
        agent=agent,
        version=trial.version,
        action="promote",
        previous=report.baseline.version,
        canary_id=trial.id,
        report=report.figures(),
        reason=reason.strip(),
    )
    return row


def _rollback_target(
    connection: Connection, agent: str, current: str, to_version: str | None
) -> tuple[str, str, int | None]:
    """The version a rollback of the active version goes to, its sha256 and the run that allows it."""
    if to_version is None:
        earlier = connection.execute(
            select(_D.c.version)
            .where(_D.c.agent == agent, _D.c.canary_share.is_(None), _D.c.version != current)
            .order_by(_D.c.id.desc())
            .limit(1)
        ).scalar()
        to_version = str(earlier) if earlier is not None else prompts.DEFAULT_VERSION
    if to_version == current:
        raise DeploymentError(f"{agent} {current} is the active version already; name another with --to.")
    settings = get_settings()
    sha = _sha(agent, to_version, settings)
    check = gate_check(connection, agent=agent, version=to_version)
    if check.passed:
        return to_version, sha, check.passing_run_id
    served = connection.execute(
        select(_D.c.golden_run_id)
        .where(_D.c.agent == agent, _D.c.version == to_version, _D.c.sha256 == sha, _D.c.status != CANARY)
        .order_by(_D.c.id.desc())
        .limit(1)
    ).first()
    if served is not None or to_version == prompts.DEFAULT_VERSION:
        return to_version, sha, served[0] if served is not None else None
    raise ReleaseGateError(f"Cannot roll back to {to_version}: {check.message}")


def _rollback_canary(
    connection: Connection,
    actor: Identity | None,
    trial: DeploymentRecord,
    *,
    baseline: str,
    reason: str,
    now: datetime,
    report: CanaryReport | None = None,
) -> None:
    _end(connection, trial, status=ROLLED_BACK, reason=reason, now=now)
    details: dict[str, Any] = {"baseline": baseline, "canary_id": trial.id, "reason": reason}
    if report is not None:
        details["report"] = report.figures()
    _audit(connection, actor, agent=trial.agent, version=trial.version, action="rollback_canary", **details)


def rollback(
    session: Session, *, by: Identity, agent: str, reason: str, to_version: str | None = None
) -> DeploymentRecord | None:
    """Roll back, at any time. With a canary and no ``to_version``: end the canary (the baseline
    serves every paragraph again); returns None. Otherwise: end any canary and make the previous
    active version (or ``to_version``, which must have passed the release gate once) active again;
    returns the new active row. Stored paragraph versions and their verdicts are never touched."""
    authz.require(by, Permission.MANAGE_PROMPTS)
    _check_agent(agent)
    if not reason.strip():
        raise DeploymentError("Say why you roll back (--reason): the audit log keeps it.")
    connection, now = session.connection(), utcnow()
    serving = _serving(connection, agent=agent)
    active, trial = _current(serving, agent, ACTIVE), _current(serving, agent, CANARY)
    current = active.version if active else prompts.DEFAULT_VERSION
    if trial is not None and to_version is None:
        report = _report(connection, active, trial, get_settings())
        _rollback_canary(connection, by, trial, baseline=current, reason=reason.strip(), now=now, report=report)
        return None
    if active is None and trial is None:
        raise DeploymentError(f"{agent} runs on its shipped version {current}; there is nothing to roll back.")
    target, sha, run_id = _rollback_target(connection, agent, current, to_version)
    if trial is not None:
        _rollback_canary(connection, by, trial, baseline=current, reason=reason.strip(), now=now)
    if active is not None:
        _end(connection, active, status=ROLLED_BACK, reason=reason.strip(), now=now)
    row = _start(
        connection,
        agent=agent,
        version=target,
        sha256=sha,
        status=ACTIVE,
        actor=by.name,
        reason=f"rollback from {current}: {reason.strip()}",
        golden_run_id=run_id,
        now=now,
    )
    _audit(connection, by, agent=agent, version=target, action="rollback", previous=current, reason=reason.strip())
    return row


def retire(session: Session, *, by: Identity, agent: str, reason: str = "") -> DeploymentRecord:
    """End the agent's canary without judging it (the trial is over, nothing was wrong); returns the ended row."""
    authz.require(by, Permission.MANAGE_PROMPTS)
    connection, now = session.connection(), utcnow()
    active, trial = _canary_of(connection, agent)
    text = reason.strip() or "canary retired"
    _end(connection, trial, status=RETIRED, reason=text, now=now)
    _audit(
        connection,
        by,
        agent=agent,
        version=trial.version,
        action="retire_canary",
        baseline=active.version if active else prompts.DEFAULT_VERSION,
        canary_id=trial.id,
        reason=text,
    )
    return _record(connection.execute(select(_D).where(_D.c.id == trial.id)).one())


# -- automatic evaluation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What evaluating one canary did or suggests."""

    agent: str
    version: str
    action: str
    """rolled_back (done automatically), ready_to_promote (a person's call) or watching."""
    report: CanaryReport


def _evaluate(connection: Connection, trial: DeploymentRecord, settings: Settings, *, now: datetime) -> Decision:
    active = _current(_serving(connection, agent=trial.agent), trial.agent, ACTIVE)
    report = _report(connection, active, trial, settings)
    if report.verdict == canary.ROLLBACK:
        reason = f"automatic rollback: {report.reason}"
        _rollback_canary(
            connection, None, trial, baseline=report.baseline.version, reason=reason, now=now, report=report
        )
        log.warning("prompt canary %s %s rolled back: %s", trial.agent, trial.version, report.reason)
        return Decision(trial.agent, trial.version, "rolled_back", report)
    return Decision(
        trial.agent, trial.version, "ready_to_promote" if report.verdict == canary.PROMOTE else "watching", report
    )


def evaluate_canaries(engine: Engine, *, now: datetime | None = None) -> list[Decision]:
    """Judge every canary; roll back those whose figures say so (the workbench acts, audited with the
    figures), report the others. Each canary in its own transaction."""
    settings = get_settings()
    with session_scope(engine) as session:
        trials = [r for r in _serving(session) if r.status == CANARY]
    decisions = []
    for trial in trials:
        try:
            with session_scope(engine) as session:
                decisions.append(_evaluate(session.connection(), trial, settings, now=now or utcnow()))
        except DeploymentError:  # a person ended or promoted it meanwhile: nothing left to judge
            continue
    return decisions


def after_false_support(session: Session, *, prompt_versions: Mapping[str, Any]) -> list[Decision]:
    """Judge, in the caller's transaction, each canary that made the paragraph version a false
    support was just reported on (its ``prompt_versions``): so it is rolled back at once, not at
    the next scheduled evaluation. Cheap when no canary runs (one SELECT)."""
    connection = session.connection()
    trials = [
        r
        for r in _serving(connection)
        if r.status == CANARY and canary.served_by(prompt_versions, agent=r.agent, version=r.version)
    ]
    settings = get_settings()
    decisions = []
    for trial in trials:
        try:
            decisions.append(_evaluate(connection, trial, settings, now=utcnow()))
        except DeploymentError:  # ended meanwhile (nothing was written): the researcher's report still stands
            continue
    return decisions
