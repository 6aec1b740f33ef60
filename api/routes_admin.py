"""Routes of the ops API: health, the kill switch, the audit log, drafting a paragraph, the tools.

Every route calls the ``core`` function the pages call; the tenant always comes from the token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from api.auth import current_identity, requires
from api.database import engine
from api.errors import ERROR_RESPONSES, ErrorBody
from core import audit, authz, controls, health, jobs, manuscripts, retrieval
from core.db import session_scope
from core.errors import GenerationPausedError, NotFoundError, PermissionDeniedError, WorkbenchError
from core.tenancy import Identity

router = APIRouter(responses=ERROR_RESPONSES)

MAX_ID = 2**31 - 1
"""The largest row id (a 32-bit integer column): a larger one is refused before it reaches the database."""
NO_NUL = r"^[^\x00]*$"
"""Text the databases can store (PostgreSQL refuses NUL characters)."""
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, Field(min_length=1, max_length=4000, pattern=NO_NUL)]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "generation is frozen (kill switch), or the job cannot be queued"}
}


def _utc(moment: datetime | None) -> datetime | None:
    try:
        return moment.astimezone(UTC) if moment is not None and moment.tzinfo else moment
    except OverflowError as error:
        raise ValueError("the time is out of range once converted to UTC") from error


Moment = Annotated[datetime | None, AfterValidator(_utc)]
Caller = Annotated[Identity, Depends(current_identity)]


# -- health --------------------------------------------------------------------------------------------


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None


class HealthOut(BaseModel):
    healthy: bool
    checks: list[CheckOut]


@router.get(
    "/health",
    response_model=HealthOut,
    tags=["health"],
    summary="Health: database, job queue, workers, kill switch, breakers (no token needed)",
    responses={503: {"model": HealthOut, "description": "a check failed; the body says which and what to do"}},
)
def get_health() -> JSONResponse:
    report = health.report(engine())
    body = HealthOut(healthy=report.healthy, checks=[CheckOut(**vars(c)) for c in report.checks])
    return JSONResponse(body.model_dump(), status_code=200 if report.healthy else 503)


# -- the kill switch -----------------------------------------------------------------------------------


class KillSwitchIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL, description="shown to everyone on every page")


class KillSwitchOut(BaseModel):
    engaged: bool
    reason: str
    actor: str
    changed_at: datetime | None
    changed: bool
    """False when the switch already was in the state asked for."""


def _admin_only(identity: Identity, action: str) -> None:
    """The API throws the switch for admins only (the issue's rule); ops use the Operations page.
    A refusal is audited like every other."""
    if authz.allowed(identity, authz.Permission.MANAGE_USERS):
        return
    with engine().begin() as connection:
        audit.record(
            connection,
            audit.PERMISSION_DENIED,
            actor=identity,
            tenant_id=identity.tenant_id,
            subject=f"api kill switch {action}",
            details={"permission": "admin", "role": identity.role},
        )
    raise PermissionDeniedError(
        f"Over the API the kill switch is for admins only (your token acts as {identity.role.replace('_', ' ')}); "
        "ops engage and release it on the Operations page.",
        permission="admin",
    )


def _switch(identity: Identity, *, engaged: bool, reason: str) -> KillSwitchOut:
    _admin_only(identity, "engage" if engaged else "release")
    changed = controls.set_kill_switch(engine(), engaged=engaged, reason=reason, actor=identity)
    state = controls.status(engine()).kill_switch
    return KillSwitchOut(
        engaged=state.engaged, reason=state.reason, actor=state.actor, changed_at=state.changed_at, changed=changed
    )


@router.post("/admin/kill-switch", response_model=KillSwitchOut, tags=["admin"], summary="Engage the kill switch")
def engage(body: KillSwitchIn, identity: Caller) -> KillSwitchOut:
    return _switch(identity, engaged=True, reason=body.reason)


@router.post(
    "/admin/kill-switch/release", response_model=KillSwitchOut, tags=["admin"], summary="Release the kill switch"
)
def release(identity: Caller) -> KillSwitchOut:
    return _switch(identity, engaged=False, reason="")


# -- the audit log -------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    tenant_id: int | None
    actor_user_id: int | None
    actor: str
    event_type: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    limit: int
    offset: int


@router.get("/api/v1/audit", response_model=AuditPage, tags=["audit"], summary="Search the audit log, newest first")
def search_audit(
    identity: Annotated[Identity, Depends(requires(authz.Permission.VIEW_AUDIT))],
    event_type: Annotated[str | None, Query(max_length=64, description="one of the audit event types")] = None,
    since: Annotated[Moment, Query(description="inclusive, ISO 8601")] = None,
    until: Annotated[Moment, Query(description="exclusive, ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AuditPage:
    if event_type and event_type not in audit.EVENT_TYPES:
        raise WorkbenchError(f"Unknown event type {event_type!r}; types are {', '.join(audit.EVENT_TYPES)}.")
    with engine().connect() as connection:
        # The token's tenant (plus workbench-wide entries), even for an admin: never another tenant's.
        entries = audit.search(
            connection,
            viewer=identity,
            event_types=[event_type] if event_type else [],
            since=since,
            until=until,
            tenant_id=identity.tenant_id,
            limit=limit,
            offset=offset,
        )
    return AuditPage(items=[AuditEntryOut(**vars(e)) for e in entries], limit=limit, offset=offset)


# -- drafting a paragraph ------------------------------------------------------------------------------


class DraftIn(BaseModel):
    manuscript_id: Id
    brief: Text


class DraftQueued(BaseModel):
    paragraph_id: int
    job_id: str
    trace_id: str
    """The request id: the job's, its follow-up's and the trajectory's trace id."""
    status_url: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    stage: str | None
    progress: float
    error: str | None


class SentenceOut(BaseModel):
    ordinal: int
    text: str
    cites: list[str]
    verdict: str
    failure_mode: str | None
    reason: str
    needs_review: bool


class VersionOut(BaseModel):
    id: int
    number: int
    status: str
    """verified (every sentence supported) or needs_review."""
    text: str
    sentences: list[SentenceOut]


class DraftStatus(BaseModel):
    paragraph_id: int
    job_id: str
    trace_id: str
    state: str
    """QUEUED, RUNNING, SUCCEEDED (drafted and verified), FAILED or CANCELLED."""
    progress: float
    error: str | None
    jobs: list[JobOut]
    """The draft job, then the verification it queued."""
    version: VersionOut | None


def _refuse_while_frozen() -> None:
    switch = controls.status(engine()).kill_switch
    if switch.engaged:
        raise GenerationPausedError(
            f"Generation is frozen: the kill switch was engaged by {switch.actor or 'ops'} ({switch.reason}). "
            "Nothing was queued; try again once it is released."
        )


@router.post(
    "/api/v1/paragraphs",
    status_code=202,
    response_model=DraftQueued,
    tags=["paragraphs"],
    summary="Add a paragraph to a manuscript and queue its draft",
    responses=CONFLICT,
)
def draft_paragraph(
    body: DraftIn,
    request: Request,
    identity: Annotated[Identity, Depends(requires(authz.Permission.DRAFT))],
) -> DraftQueued:
    _refuse_while_frozen()
    with session_scope(engine()) as s:
        paragraph_id = manuscripts.add_paragraph(
            s, tenant_id=identity.tenant_id, manuscript_id=body.manuscript_id, brief=body.brief
        ).id
    trace_id = str(request.state.request_id)
    job_id = jobs.enqueue(
        engine(),
        tenant_id=identity.tenant_id,
        user_id=identity.user_id or None,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id=trace_id,
    )
    url = f"/api/v1/paragraphs/{paragraph_id}/jobs/{job_id}"
    return DraftQueued(paragraph_id=paragraph_id, job_id=job_id, trace_id=trace_id, status_url=url)


def _job(view: jobs.JobView) -> JobOut:
    return JobOut(
        id=view.id, kind=view.kind, state=view.state, stage=view.stage, progress=view.progress, error=view.error
    )


def _version(identity: Identity, paragraph_id: int, version_id: object) -> VersionOut | None:
    with session_scope(engine()) as s:
        manuscripts.get_paragraph(s, tenant_id=identity.tenant_id, paragraph_id=paragraph_id)
        for v in manuscripts.list_versions(s, tenant_id=identity.tenant_id, paragraph_id=paragraph_id):
            if v.id == version_id:
                sentences = [
                    SentenceOut(
                        ordinal=c.ordinal,
                        text=c.text,
                        cites=[str(x) for x in c.cites],
                        verdict=c.verdict,
                        failure_mode=c.failure_mode,
                        reason=c.reason,
                        needs_review=c.needs_review,
                    )
                    for c in v.sentences
                ]
                return VersionOut(id=v.id, number=v.number, status=v.status, text=v.text, sentences=sentences)
    return None


@router.get(
    "/api/v1/paragraphs/{paragraph_id}/jobs/{job_id}",
    response_model=DraftStatus,
    tags=["paragraphs"],
    summary="A queued draft: its jobs' state and progress, then the version with each sentence's verdict",
)
def draft_status(
    paragraph_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    job_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,36}$")],
    identity: Annotated[Identity, Depends(requires(authz.Permission.DRAFT))],
) -> DraftStatus:
    with session_scope(engine()) as s:  # the paragraph must be this tenant's (404 otherwise)
        manuscripts.get_paragraph(s, tenant_id=identity.tenant_id, paragraph_id=paragraph_id)
    draft = jobs.status(engine(), tenant_id=identity.tenant_id, job_id=job_id)
    if draft.kind != "draft":
        raise NotFoundError(f"Job {job_id} is not a draft job; use the status URL the draft request returned.")
    chain = [draft] + [
        jobs.status(engine(), tenant_id=identity.tenant_id, job_id=str(next_id))
        for next_id in (draft.result or {}).get("next_job_ids", [])
    ]
    last = chain[-1]
    version = None
    if last is not draft and last.state == jobs.SUCCEEDED:
        version = _version(identity, paragraph_id, (last.result or {}).get("version_id"))
        if version is None:
            raise NotFoundError(f"Job {job_id} did not draft paragraph {paragraph_id}.")
    done = version is not None
    return DraftStatus(
        paragraph_id=paragraph_id,
        job_id=draft.id,
        trace_id=draft.trace_id,
        state=last.state,
        progress=1.0 if done else round(sum(j.progress for j in chain) / 2, 3),
        error=last.error,
        jobs=[_job(j) for j in chain],
        version=version,
    )


# -- tools an external agent may call ------------------------------------------------------------------


class ToolOut(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments (the body of ``POST /api/v1/tools/{name}``)."""


class ToolsOut(BaseModel):
    tools: list[ToolOut]


class SearchIn(BaseModel):
    manuscript_id: Id
    query: Text
    top_k: int = Field(default=retrieval.DEFAULT_TOP_K, ge=1, le=50)


class SourceOut(BaseModel):
    document_id: int
    document: str
    page: int
    quote: str
    """The verbatim span of the PDF the fact rests on."""


class FactOut(BaseModel):
    id: str
    """The fact's reference (F12), as sentences cite it."""
    text: str
    score: float
    source: SourceOut


class SearchOut(BaseModel):
    manuscript_id: int
    facts: list[FactOut]


def _search_tool(identity: Identity) -> ToolOut:
    with session_scope(engine()) as s:  # the spec only; nothing is searched
        spec = retrieval.search_corpus_tool(s, tenant_id=identity.tenant_id, manuscript_id=0).definition()
    parameters = dict(spec["parameters"])
    parameters["properties"] = {
        "manuscript_id": {"type": "integer", "minimum": 1, "description": "the manuscript whose facts to search"},
        **parameters["properties"],
    }
    parameters["required"] = ["manuscript_id", *parameters.get("required", [])]
    return ToolOut(name=spec["name"], description=spec["description"], parameters=parameters)


@router.get("/api/v1/tools", response_model=ToolsOut, tags=["tools"], summary="Function definitions an agent may call")
def list_tools(identity: Caller) -> ToolsOut:
    return ToolsOut(tools=[_search_tool(identity)])


@router.post(
    "/api/v1/tools/search_corpus",
    response_model=SearchOut,
    tags=["tools"],
    summary="search_corpus: a manuscript's facts that best match a query, with scores and sources",
)
def search_corpus(
    body: SearchIn, identity: Annotated[Identity, Depends(requires(authz.Permission.DRAFT))]
) -> SearchOut:
    with session_scope(engine()) as s:
        manuscripts.get_manuscript(s, tenant_id=identity.tenant_id, manuscript_id=body.manuscript_id)
        hits = retrieval.search_corpus(
            s, tenant_id=identity.tenant_id, manuscript_id=body.manuscript_id, query=body.query, top_k=body.top_k
        )
    facts = [
        FactOut(
            id=h.ref,
            text=h.text,
            score=round(h.score, 4),
            source=SourceOut(document_id=h.document_id, document=h.document, page=h.page, quote=h.quote),
        )
        for h in hits
    ]
    return SearchOut(manuscript_id=body.manuscript_id, facts=facts)
