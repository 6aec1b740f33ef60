"""Read-only queries and plain-text helpers the pages show (no Streamlit here).

Each aggregates in the database; queries of tenant data take the tenant. The control events
are the exception: the kill switch and the breakers cover every tenant, so their log does too.
When core grows the real module (prompt deployments in issue 7, accounts in issue 6), the page
switches to it and the function here goes; costs and traces moved to ``core.dashboard`` and
``core.trajectories``.

The job helpers at the end turn ``core.jobs`` views into what the Write page follows: an
``Action`` is one press of a button (the job it queued and the jobs that job queued in turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core import jobs
from core.db import as_utc, session_scope
from core.jobs import QUEUED, RUNNING, SUCCEEDED, JobView
from core.models import ControlEvent, Job, ParagraphVersion, User


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


# Jobs as the pages follow them ------------------------------------------------------------------

KIND_LABELS = {
    "ingest": "Ingesting",
    "draft": "Drafting",
    "verify_draft": "Verifying the draft",
    "edit": "Verifying the edited sentences",
    "reverify": "Verifying again",
}
"""What each job kind is doing, as a person would say it."""


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def queue_place(view: JobView) -> str:
    """Where a queued job stands: ``2nd in the generation queue``."""
    if view.queue_position is None:
        return f"waiting in the {view.queue} queue"
    return f"{ordinal(view.queue_position)} in the {view.queue} queue"


@dataclass(frozen=True)
class Action:
    """One press of a button: the job it queued (``job_id``) and the jobs that job queued in turn,
    oldest first (a draft and its verification)."""

    job_id: str
    subject: str
    """What the action is about when the kind alone does not say (an upload's file name)."""
    jobs: tuple[JobView, ...]

    @property
    def live(self) -> bool:
        """Some job of it is still queued or running."""
        return any(not view.final for view in self.jobs)

    @property
    def succeeded(self) -> bool:
        return not self.live and all(view.state == SUCCEEDED for view in self.jobs)

    @property
    def stopped(self) -> JobView | None:
        """The job that failed or was cancelled, once nothing of the action runs any more."""
        if self.live:
            return None
        return next((view for view in self.jobs if view.state != SUCCEEDED), None)

    @property
    def result(self) -> dict[str, Any]:
        """The result of its last job (the saved version, the ingested document)."""
        return dict(self.jobs[-1].result or {}) if self.jobs else {}


def actions(engine: Engine, *, tenant_id: int, job_ids: Sequence[str]) -> list[Action]:
    """The actions started by ``job_ids``, in that order; ids this tenant does not have are skipped."""
    if not job_ids:
        return []
    with session_scope(engine) as s:
        rows = {
            r.id: r
            for r in s.execute(
                select(Job.id, Job.trace_id, Job.payload).where(Job.tenant_id == tenant_id, Job.id.in_(job_ids))
            )
        }
    out = []
    for job_id in job_ids:
        row = rows.get(job_id)
        if row is None:
            continue
        chain: list[JobView] = []
        members = {job_id}
        for view in jobs.trace_jobs(engine, tenant_id=tenant_id, trace_id=row.trace_id):
            if view.id in members or view.parent_job_id in members:
                members.add(view.id)
                chain.append(view)
        out.append(Action(job_id, str((row.payload or {}).get("filename", "")), tuple(chain)))
    return out


@dataclass(frozen=True)
class LiveJob:
    """A user's action that is still queued or running, found again after a page reload."""

    job_id: str
    kind: str
    payload: dict[str, Any]


def live_actions(session: Session, *, tenant_id: int, user_id: int, limit: int = 50) -> list[LiveJob]:
    """The first jobs of this user's actions that still have a job queued or running, oldest first."""
    live = session.execute(
        select(Job.id, Job.parent_job_id)
        .where(Job.tenant_id == tenant_id, Job.created_by == user_id, Job.state.in_([QUEUED, RUNNING]))
        .order_by(Job.created_at)
        .limit(limit)
    ).all()
    roots: list[str] = []
    for job_id, parent in live:
        while parent is not None:  # a follow-up (a draft's verification) leads back to the job the user started
            job_id = parent
            parent = session.scalar(select(Job.parent_job_id).where(Job.tenant_id == tenant_id, Job.id == job_id))
        if job_id not in roots:
            roots.append(job_id)
    found = {j.id: j for j in session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.id.in_(roots)))}
    return [LiveJob(i, found[i].kind, dict(found[i].payload or {})) for i in roots if i in found]


def job_rows(session: Session, *, tenant_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """This workspace's latest jobs, newest first, as the Operations table shows them."""
    return [
        {
            "Kind": j.kind,
            "Queue": j.queue,
            "State": j.state,
            "Attempt": f"{j.attempt} of {j.max_attempts}",
            "Worker": j.worker or "",
            "Created": as_utc(j.created_at),
            "Finished": as_utc(j.finished_at) if j.finished_at else None,
            "Error": j.error or "",
            "Progress": j.progress,
            "Stage": j.stage or "",
            "Trace": j.trace_id,
            "Job": j.id,
        }
        for j in jobs.recent_jobs(session, tenant_id=tenant_id, limit=limit)
    ]


def transition_rows(session: Session, *, tenant_id: int, job_id: str) -> list[dict[str, Any]]:
    """Every change of one job's state, oldest first: from, to, when and why."""
    return [
        {"From": t.from_state or "", "To": t.to_state, "At": as_utc(t.at), "Reason": t.reason}
        for t in jobs.transitions(session, tenant_id=tenant_id, job_id=job_id)
    ]
