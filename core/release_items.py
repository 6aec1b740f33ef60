"""The release checklist's items that read the database and the prompt files: migrations, the golden
regression, pinned prompt versions and the rollback plan (costs: ``core.release_costs``; secrets:
``core.release_secrets``).

Each item is a function returning an ``ItemResult`` whose reason, on a failure, says what to do and
with which command. The checks the environment profiles enforce at start-up (``core.environments``)
are the helpers here too (``schema_state``, ``pin_state``), so a release check and a refusal to start
can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from core import audit, db, deployments, golden_results, prompts
from core.errors import PromptError
from core.golden_results import RunSummary
from core.models import AuditEntry, PromptDeployment, utcnow
from core.settings import Settings

MIGRATIONS = "migrations applied"
GOLDEN = "golden regression passed"
COSTS = "cost estimates reviewed"
PINNED = "prompt versions pinned"
SECRETS = "secrets verified"
ROLLBACK = "rollback plan ready"
ITEMS = (MIGRATIONS, GOLDEN, COSTS, PINNED, SECRETS, ROLLBACK)
"""The seed's release checklist, in its order."""

GOLDEN_RUNS_SCANNED = 500
"""The newest finished golden runs searched for one of the serving versions."""


@dataclass(frozen=True)
class ItemResult:
    """One checklist item's outcome; ``reason`` says why, and on a failure what to run."""

    item: str
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    """Figures behind the reason (plain JSON), e.g. the cost table."""

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.item, "passed": self.passed, "reason": self.reason}


# -- migrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str
    pending: tuple[str, ...]
    """Revisions between the database and head, oldest first, each with its message."""
    unknown: bool = False
    """The database names a revision this code does not know (a newer release wrote it)."""

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def problem(self) -> str | None:
        """What is wrong, with the command that fixes it; None at head."""
        if self.at_head:
            return None
        if self.unknown:
            return (
                f"the database is at revision {self.current}, which this release does not know (head is {self.head}):"
                " a newer release migrated it; run that release, or restore a backup taken before it"
            )
        where = f"at revision {self.current}" if self.current else "empty (no schema)"
        pending = ", ".join(self.pending)
        return f"the database is {where}, behind head {self.head}; pending {pending}: run `python -m core migrate`"


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands against Alembic's head; never migrates."""
    script = ScriptDirectory.from_config(db.alembic_config(engine))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = script.get_current_head() or ""
    pending: list[str] = []
    revision = script.get_revision(head) if head else None
    while revision is not None and revision.revision != current:
        title = (revision.doc or "").splitlines()[0].split(":")[0].strip() if revision.doc else ""
        pending.append(f"{revision.revision} ({title})" if title else revision.revision)
        down = revision.down_revision
        revision = script.get_revision(down) if isinstance(down, str) else None
    unknown = current is not None and revision is None
    return SchemaState(current, head, tuple(reversed(pending)), unknown)


def migrations_item(engine: Engine) -> ItemResult:
    state = schema_state(engine)
    if state.problem is None:
        return ItemResult(MIGRATIONS, True, f"the database is at head ({state.head})", {"revision": state.head})
    return ItemResult(MIGRATIONS, False, state.problem[0].upper() + state.problem[1:], {"revision": state.current})


# -- golden regression ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingRun:
    """The serving version of each agent (with its file's sha256) and the newest finished golden run
    that ran exactly those files, if any."""

    versions: dict[str, str]
    hashes: dict[str, str]
    run: RunSummary | None

    @property
    def label(self) -> str:
        return ", ".join(f"{agent} {version}" for agent, version in self.versions.items())


def serving_run(session: Session) -> ServingRun:
    """The newest golden run (passed or failed) whose prompt files are, by sha256, the ones serving now."""
    agents = deployments.status(session, history=0)
    versions = {a.agent: a.active_version for a in agents}
    hashes = {a.agent: a.active_sha256 for a in agents}
    for run in golden_results.list_runs(session, limit=GOLDEN_RUNS_SCANNED, finished_only=True):
        if all(hashes[agent] and run.prompt_hashes.get(agent) == sha for agent, sha in hashes.items()):
            return ServingRun(versions, hashes, run)
    return ServingRun(versions, hashes, None)


def golden_item(found: ServingRun) -> ItemResult:
    run = found.run
    if run is None:
        return ItemResult(
            GOLDEN,
            False,
            f"No golden run has run the serving prompt versions ({found.label}) by their exact files: "
            "run `python -m core golden run`.",
        )
    figures = {"run_id": run.id, "cases_passed": run.cases_passed, "cases_total": run.cases_total}
    if run.status == "passed" and not run.false_supports:
        return ItemResult(
            GOLDEN,
            True,
            f"golden run #{run.id} of the serving versions passed: {run.cases_passed}/{run.cases_total} cases, "
            "no false support",
            figures,
        )
    cases = ", ".join(str(c) for c in run.failing_cases) or "none named"
    false = f", {run.false_supports} false support(s)" if run.false_supports else ""
    return ItemResult(
        GOLDEN,
        False,
        f"The newest golden run of the serving versions, #{run.id}, {run.status}: failing cases {cases}{false}. "
        "Fix the prompt or roll it back (`python -m core prompts rollback AGENT --reason TEXT`), then "
        "`python -m core golden run`.",
        {**figures, "failing_cases": [str(c) for c in run.failing_cases]},
    )


# -- pinned prompt versions ----------------------------------------------------------------------


@dataclass(frozen=True)
class PinState:
    unpinned: tuple[str, ...]
    """Agents serving the shipped default with no deployment row."""
    problems: tuple[str, ...]
    """Deployed files that no longer load with the sha256 their deployment recorded."""

    @property
    def message(self) -> str | None:
        parts = []
        if self.unpinned:
            parts.append(
                f"unpinned prompt version for {', '.join(self.unpinned)} (the shipped {prompts.DEFAULT_VERSION} "
                "serves with no deployment): pin each with `python -m core prompts activate AGENT VERSION`"
            )
        parts += self.problems
        return "; ".join(parts) or None


def _file_problem(agent: str, record: deployments.DeploymentRecord, settings: Settings) -> str | None:
    kind = "canary" if record.status == deployments.CANARY else "active"
    try:
        sha = prompts.load(agent, record.version, settings.prompts_dir).sha256
    except PromptError as error:
        return f"the {kind} {agent} {record.version} does not load: {error}"
    if sha != record.sha256:
        return (
            f"the {kind} {agent} {record.version} file (sha256 {sha[:12]}) is not the one deployed "
            f"(sha256 {record.sha256[:12]}): restore the deployed file or deploy a new version"
        )
    return None


def pin_state(db_: Connection | Session, settings: Settings) -> PinState:
    """Which agents run unpinned, and which deployed files no longer match their deployment."""
    unpinned, problems = [], []
    for agent in deployments.status(db_, history=0):
        if agent.active is None:
            unpinned.append(agent.agent)
        for record in (agent.active, agent.canary):
            if record is not None and (problem := _file_problem(agent.agent, record, settings)):
                problems.append(problem)
    return PinState(tuple(unpinned), tuple(problems))


def pinned_item(session: Session, settings: Settings) -> ItemResult:
    state = pin_state(session, settings)
    if state.message is None:
        return ItemResult(PINNED, True, "every agent has an active deployment whose file matches its lock")
    return ItemResult(
        PINNED, False, state.message[0].upper() + state.message[1:] + ".", {"unpinned": list(state.unpinned)}
    )


# -- rollback plan -------------------------------------------------------------------------------


def last_backup(connection: Connection) -> datetime | None:
    """When the newest successful backup was recorded in the audit log."""
    at = connection.scalar(select(func.max(AuditEntry.at)).where(AuditEntry.event_type == audit.BACKUP))
    return db.as_utc(at) if at is not None else None


def rollback_target(connection: Connection, agent: str, active: str) -> str:
    """The version ``prompts rollback AGENT`` would make active: the newest earlier non-canary
    deployment of another version, else the shipped default (as ``core.deployments`` decides)."""
    d = PromptDeployment
    earlier = connection.scalar(
        select(d.version)
        .where(d.agent == agent, d.canary_share.is_(None), d.version != active)
        .order_by(d.id.desc())
        .limit(1)
    )
    return str(earlier) if earlier is not None else prompts.DEFAULT_VERSION


def rollback_item(session: Session, settings: Settings, *, now: datetime | None = None) -> ItemResult:
    connection = session.connection()
    problems, targets = [], []
    backed_up = last_backup(connection)
    limit = settings.release_backup_max_age_h
    age_h = ((now or utcnow()) - backed_up).total_seconds() / 3600 if backed_up else None
    if age_h is None:
        problems.append("no backup is recorded: run `python -m core backup PATH`")
    elif age_h > limit:
        problems.append(f"the newest backup is {age_h:.1f} h old (limit {limit:g} h): run `python -m core backup PATH`")
    for agent in deployments.status(session, history=0):
        if agent.active is None:
            continue  # the shipped default serves: nothing to roll back to
        target = rollback_target(connection, agent.agent, agent.active_version)
        if target == agent.active_version:
            continue
        try:
            prompts.load(agent.agent, target, settings.prompts_dir)
        except PromptError as error:
            problems.append(f"{agent.agent}'s rollback target {target} does not load ({error})")
            continue
        targets.append(f"{agent.agent} → {target}")
    details = {"backup_age_h": round(age_h, 2) if age_h is not None else None, "targets": targets}
    if problems:
        text = "; ".join(problems)
        return ItemResult(ROLLBACK, False, text[0].upper() + text[1:] + ".", details)
    assert age_h is not None  # no problem means a recent backup was found
    where = f"; rollback targets load: {', '.join(targets)}" if targets else "; no agent has an earlier version"
    return ItemResult(ROLLBACK, True, f"backup {age_h:.1f} h old (limit {limit:g} h){where}", details)
