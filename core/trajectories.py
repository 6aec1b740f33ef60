"""Reading stored trajectories: the filtered, paged list and one trace with its spans opened.

The write side is ``core.tracing``; this module only reads. Every query takes the tenant, and
filtering, counting and paging happen in SQL on the indexes of ``Trajectory`` and
``TrajectoryEvent`` (a page never loads all events). Span content is opened here, span by span:
a span whose key is missing or wrong carries the ring's message instead of its content, so one
bad row never hides the rest of the trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from core import audit, authz, crypto
from core.authz import Permission
from core.errors import NotFoundError
from core.models import ParagraphVersion, Trajectory, TrajectoryEvent, utcnow
from core.tenancy import Identity

DEFAULT_PAGE_SIZE = 25
"""Trajectories per page of the list."""

OPTIONS_WINDOW = timedelta(days=90)
"""How far back the filter choices (agents, models, prompt versions) look, so that finding
them stays a range scan on ``ix_trajev_tenant_started`` rather than a pass over every span."""

STATUSES = ("ok", "error", "running")
KINDS = ("paragraph", "ingest", "edit", "reverify", "golden", "replay")


@dataclass(frozen=True)
class TrajectoryFilter:
    """What the list is narrowed to; None means any. ``since``/``until`` bound the start time."""

    status: str | None = None
    kind: str | None = None
    agent: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    paragraph_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class TrajectoryPage:
    rows: list[Trajectory]
    total: int
    """Trajectories matching the filter, over all pages."""
    page: int
    """1-based; a page past the end is clamped to the last one."""
    pages: int
    """At least 1, so "page 1 of 1" reads right on an empty list."""


@dataclass(frozen=True)
class FilterOptions:
    agents: list[str]
    models: list[str]
    prompt_versions: list[str]


@dataclass(frozen=True)
class Span:
    """A span as the viewer shows it: the stored event, where it sits, and its content opened."""

    event: TrajectoryEvent
    offset_ms: float
    """Milliseconds from the trace start to the span's start."""
    depth: int
    """0 for a span without a (known) parent, then one more per level of nesting."""
    content: Any = None
    content_error: str | None = None
    """Why the content could not be opened (missing or wrong key, altered bytes); None when it opened."""

    @property
    def has_content(self) -> bool:
        return self.event.content is not None


@dataclass(frozen=True)
class ProducedSentence:
    ordinal: int
    text: str
    cites: list[str]
    verdict: str
    failure_mode: str | None
    reason: str


@dataclass(frozen=True)
class ProducedVersion:
    """The paragraph version a run produced."""

    id: int
    paragraph_id: int
    number: int
    text: str
    status: str
    sentences: list[ProducedSentence] = field(default_factory=list)


@dataclass(frozen=True)
class Trace:
    trajectory: Trajectory
    spans: list[Span]
    version: ProducedVersion | None
    content_hidden: bool = False
    """The viewer's role may not read trace content: spans carry no content and ``version`` is None."""


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones: make both aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _conditions(tenant_id: int, filters: TrajectoryFilter) -> list[ColumnElement[bool]]:
    t = Trajectory
    conditions: list[ColumnElement[bool]] = [t.tenant_id == tenant_id]
    if filters.status:
        conditions.append(t.status == filters.status)
    if filters.kind:
        conditions.append(t.kind == filters.kind)
    if filters.paragraph_id is not None:
        conditions.append(t.paragraph_id == filters.paragraph_id)
    # In UTC: SQLite stores the UTC wall clock and would compare another zone's as if it were UTC.
    if filters.since is not None:
        conditions.append(t.started_at >= as_utc(filters.since))
    if filters.until is not None:
        conditions.append(t.started_at < as_utc(filters.until))
    # Separate EXISTS per span attribute: the model is often recorded on an attempt span and the
    # agent on its parent, so "agent X and model Y" means the trace has both, not one span with both.
    e = TrajectoryEvent
    for column, value in (
        (e.agent, filters.agent),
        (e.model, filters.model),
        (e.prompt_version, filters.prompt_version),
    ):
        if value:
            conditions.append(exists().where(e.tenant_id == tenant_id, e.trace_id == t.trace_id, column == value))
    return conditions


def list_trajectories(
    session: Session,
    *,
    tenant_id: int,
    filters: TrajectoryFilter | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> TrajectoryPage:
    """One page of the tenant's trajectories matching ``filters``, newest first."""
    conditions = _conditions(tenant_id, filters or TrajectoryFilter())
    total = int(session.scalar(select(func.count()).select_from(Trajectory).where(*conditions)) or 0)
    page_size = max(1, page_size)
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    rows = session.scalars(
        select(Trajectory)
        .where(*conditions)
        .order_by(Trajectory.started_at.desc(), Trajectory.trace_id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return TrajectoryPage(rows=list(rows), total=total, page=page, pages=pages)


def filter_options(session: Session, *, tenant_id: int, now: datetime | None = None) -> FilterOptions:
    """The agents, models and prompt versions the tenant's spans named lately (``OPTIONS_WINDOW``)."""
    since = (now or utcnow()) - OPTIONS_WINDOW
    e = TrajectoryEvent

    def distinct(column: InstrumentedAttribute[str | None]) -> list[str]:
        query = select(column).where(e.tenant_id == tenant_id, e.started_at >= since, column.is_not(None)).distinct()
        return sorted(v for v in session.scalars(query) if v)

    return FilterOptions(distinct(e.agent), distinct(e.model), distinct(e.prompt_version))


def get_trace(session: Session, *, viewer: Identity, trace_id: str, ring: crypto.KeyRing) -> Trace:
    """A trajectory of the viewer's tenant with its spans in start order, content opened, and its paragraph.

    Requires ``VIEW_TRACES``. Content (span content, the paragraph produced) only with
    ``VIEW_TRACE_CONTENT``; otherwise ``content_hidden`` says so. A view that opened content is
    audited as ``TRACE_VIEWED`` in the caller's transaction (the trace id, never the content).
    """
    authz.require(viewer, Permission.VIEW_TRACES)
    tenant_id = viewer.tenant_id
    readable = authz.allowed(viewer, Permission.VIEW_TRACE_CONTENT)
    trajectory = session.scalar(
        select(Trajectory).where(Trajectory.tenant_id == tenant_id, Trajectory.trace_id == trace_id)
    )
    if trajectory is None:
        raise NotFoundError(
            f"No trajectory '{trace_id}' in this workspace: it may belong to another tenant, or the run never "
            "started recording. Pick one from the list."
        )
    events = list(
        session.scalars(
            select(TrajectoryEvent)
            .where(TrajectoryEvent.tenant_id == tenant_id, TrajectoryEvent.trace_id == trace_id)
            .order_by(TrajectoryEvent.started_at, TrajectoryEvent.id)
        )
    )
    start = as_utc(trajectory.started_at)
    if events:
        start = min(start, as_utc(events[0].started_at))
    depths = _depths(events)
    spans = []
    for event in events:
        content, error = _open(event, ring) if readable else (None, None)
        offset = (as_utc(event.started_at) - start).total_seconds() * 1000
        spans.append(Span(event, offset, depths[event.span_id], content, error))
    if not readable:
        return Trace(trajectory, spans, None, content_hidden=True)
    opened = sum(1 for span in spans if span.has_content and span.content_error is None)
    if opened:
        audit.record(
            session.connection(),
            audit.TRACE_VIEWED,
            actor=viewer,
            tenant_id=tenant_id,
            subject=trace_id,
            details={"kind": trajectory.kind, "spans_opened": opened},
        )
    return Trace(trajectory, spans, _produced(session, tenant_id=tenant_id, trajectory=trajectory))


def _depths(events: list[TrajectoryEvent]) -> dict[str, int]:
    parents = {e.span_id: e.parent_span_id for e in events}
    depths: dict[str, int] = {}
    for span_id in parents:
        chain: list[str] = []
        current: str | None = span_id
        # Walk up until a known depth, a root, or a parent this trace does not hold (or a loop,
        # which a broken writer could leave: the chain check stops it instead of spinning).
        while current is not None and current in parents and current not in depths and current not in chain:
            chain.append(current)
            current = parents[current]
        base = depths[current] + 1 if current is not None and current in depths else 0
        for offset, node in enumerate(reversed(chain)):
            depths[node] = base + offset
    return depths


def _open(event: TrajectoryEvent, ring: crypto.KeyRing) -> tuple[Any, str | None]:
    if event.content is None:
        return None, None
    if not event.key_id:
        return None, "This span's content was stored without a key id, so no key can open it."
    aad = crypto.span_aad(event.tenant_id, event.trace_id, event.span_id)
    try:
        return ring.open_json(event.key_id, event.content, aad=aad), None
    except crypto.DecryptionError as exc:
        return None, str(exc)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"The content under key '{event.key_id}' opened but is not the JSON the tracer writes."


def _produced(session: Session, *, tenant_id: int, trajectory: Trajectory) -> ProducedVersion | None:
    query = select(ParagraphVersion).where(ParagraphVersion.tenant_id == tenant_id)
    if trajectory.version_id is not None:
        query = query.where(ParagraphVersion.id == trajectory.version_id)
    else:
        # Runs recorded before the trajectory learnt its version: the version names its trace.
        query = query.where(ParagraphVersion.trace_id == trajectory.trace_id).order_by(ParagraphVersion.id.desc())
    version = session.scalars(query.options(selectinload(ParagraphVersion.sentences)).limit(1)).first()
    if version is None:
        return None
    sentences = [
        ProducedSentence(s.ordinal, s.text, [str(c) for c in s.cites], s.verdict, s.failure_mode, s.reason)
        for s in version.sentences
    ]
    return ProducedVersion(version.id, version.paragraph_id, version.number, version.text, version.status, sentences)
