"""What a job can be: each kind names its queue and the ``core`` function that does the work.

A kind's function gets the job's session and a ``JobRun`` (ids, payload, progress) and returns
a JSON-able result. Payloads hold primitive ids only (an upload travels as the sha256 of the PDF
already in the content-addressed store), so a job can run on any worker machine.

Drafting a paragraph crosses queues: ``draft`` runs the Writer on ``generation``, then queues
``verify_draft`` on ``verification`` (Verifier, Rewriter, the saved version) with the same trace.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core import crypto
from core.models import Document
from core.pipeline import Draft, finish_draft, reverify, save_edited_version, write_draft
from core.progress import ProgressFn
from core.settings import get_settings
from core.sources import add_source
from core.storage import delete_blob, read_blob
from core.tenancy import Identity

FACTS, GENERATION, VERIFICATION = "facts", "generation", "verification"
QUEUES = (FACTS, GENERATION, VERIFICATION)


@dataclass
class JobRun:
    """What a running job knows about itself."""

    job_id: str
    tenant_id: int
    user_id: int | None
    trace_id: str
    payload: dict[str, Any]
    progress: ProgressFn
    follow_ups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def then(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue ``kind`` when (and only if) this job succeeds, in the same trace."""
        self.follow_ups.append((kind, payload))


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str
    run: Callable[[Session, JobRun], dict[str, Any]]
    drafting: bool = False
    """Drafts a paragraph (it may be the half-open probe of the paragraph breakers)."""
    cleanup: Callable[[Engine, dict[str, Any]], None] | None = None
    """Called after the job ends without success (failed, cancelled, never started)."""


def _ingest(session: Session, run: JobRun) -> dict[str, Any]:
    p = run.payload
    result = add_source(
        session,
        identity=Identity(tenant_id=run.tenant_id, user_id=run.user_id or 0),  # ingestion reads only the tenant
        manuscript_id=int(p["manuscript_id"]),
        filename=str(p["filename"]),
        data=read_blob(str(p["sha256"])),
        trace_id=run.trace_id,
        progress=run.progress,
        job_id=run.job_id,
    )
    return {
        "document_id": result.document.id,
        "pages": result.document.page_count,
        "facts_added": result.facts_added,
        "facts_rejected": result.facts_rejected,
    }


def _forget_unused_upload(engine: Engine, payload: dict[str, Any]) -> None:
    # The upload was stored before it was queued; keep it only if some document uses it.
    sha = str(payload.get("sha256", ""))
    with engine.connect() as connection:
        used = connection.scalar(select(func.count()).select_from(Document).where(Document.sha256 == sha))
    if sha and not used:
        delete_blob(sha)


def _draft(session: Session, run: JobRun) -> dict[str, Any]:
    paragraph_id = int(run.payload["paragraph_id"])
    draft = write_draft(
        session,
        tenant_id=run.tenant_id,
        paragraph_id=paragraph_id,
        trace_id=run.trace_id,
        progress=run.progress,
        job_id=run.job_id,
    )
    # The draft is the Writer's output: it travels to the verification queue sealed, like all
    # trace content, so the jobs table holds no model output in the clear.
    sealed = crypto.key_ring(get_settings()).seal_json(draft.as_dict(), aad=_draft_aad(run))
    run.then(
        "verify_draft",
        {"paragraph_id": paragraph_id, "draft_sealed": base64.b64encode(sealed.blob).decode(), "key_id": sealed.key_id},
    )
    return {"sentences": len(draft.sentences)}


def _draft_aad(run: JobRun) -> bytes:
    return f"draft:{run.tenant_id}:{run.trace_id}".encode()


def _opened_draft(run: JobRun) -> Draft:
    p = run.payload
    if "draft" in p:  # queued before drafts were sealed
        return Draft.from_dict(p["draft"])
    blob = base64.b64decode(str(p["draft_sealed"]))
    return Draft.from_dict(crypto.key_ring(get_settings()).open_json(str(p["key_id"]), blob, aad=_draft_aad(run)))


def _verify_draft(session: Session, run: JobRun) -> dict[str, Any]:
    version = finish_draft(
        session,
        tenant_id=run.tenant_id,
        user_id=run.user_id,
        paragraph_id=int(run.payload["paragraph_id"]),
        draft=_opened_draft(run),
        trace_id=run.trace_id,
        progress=run.progress,
        job_id=run.job_id,
    )
    return {"version_id": version.id, "status": version.status}


def _edit(session: Session, run: JobRun) -> dict[str, Any]:
    version = save_edited_version(
        session,
        tenant_id=run.tenant_id,
        user_id=run.user_id,
        paragraph_id=int(run.payload["paragraph_id"]),
        sentences=[(str(text), [str(c) for c in cites]) for text, cites in run.payload["sentences"]],
        trace_id=run.trace_id,
    )
    return {"version_id": version.id, "status": version.status}


def _reverify(session: Session, run: JobRun) -> dict[str, Any]:
    version = reverify(
        session,
        tenant_id=run.tenant_id,
        user_id=run.user_id,
        paragraph_id=int(run.payload["paragraph_id"]),
        version_id=int(run.payload["version_id"]),
        trace_id=run.trace_id,
    )
    return {"version_id": version.id, "status": version.status}


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("ingest", FACTS, _ingest, cleanup=_forget_unused_upload),
        JobKind("draft", GENERATION, _draft, drafting=True),
        JobKind("verify_draft", VERIFICATION, _verify_draft, drafting=True),
        JobKind("edit", VERIFICATION, _edit),
        JobKind("reverify", VERIFICATION, _reverify),
    )
}
"""Every kind of job, by name."""
