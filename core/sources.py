"""Adding a source to a manuscript: ingest the PDF, then let the Librarian read every chunk.

The PDF is checked and chunked and every chunk read by the Librarian before anything is written;
then the document, chunks and facts are written in the caller's transaction. A file that fails
anywhere leaves no document, no chunks, no facts and no stored original behind (only the
gateway's record of the model calls it made).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256

from sqlalchemy.orm import Session

from core import gateway, policy, tracing
from core.documents import PreparedPdf, list_chunks, prepare_pdf, save_pdf, title_of
from core.facts import ChunkText, keep_facts, read_chunks
from core.models import Document
from core.progress import ProgressFn, no_progress, scaled
from core.storage import blob_path, delete_blob
from core.tenancy import Identity


@dataclass(frozen=True)
class SourceResult:
    document: Document
    facts_added: int
    facts_rejected: int


def add_source(
    session: Session,
    *,
    identity: Identity,
    manuscript_id: int,
    filename: str,
    data: bytes,
    trace_id: str | None = None,
    progress: ProgressFn = no_progress,
    job_id: str | None = None,
    prompt_pins: Mapping[str, str] | None = None,
    model_pins: Mapping[str, str] | None = None,
) -> SourceResult:
    """``prompt_pins`` and ``model_pins`` (agent -> version or model) name the Librarian's version and
    model over what would serve otherwise (golden runs)."""
    trace_id = trace_id or uuid.uuid4().hex
    blob_existed = blob_path(sha256(data).hexdigest()).exists()
    ctx = gateway.CallContext(session=session, tenant_id=identity.tenant_id, trace_id=trace_id, job_id=job_id)
    ctx.prompt_pins.update(prompt_pins or {})
    ctx.model_pins.update(model_pins or {})
    # A file that cannot be read is a failed ingest run too: the trajectory starts before the checks.
    with tracing.run(ctx, "ingest", manuscript_id=manuscript_id) as run:
        with run.stage("prepare_pdf", bytes=len(data)):
            prepared = prepare_pdf(
                session,
                tenant_id=identity.tenant_id,
                manuscript_id=manuscript_id,
                filename=filename,
                data=data,
                progress=scaled(progress, 0.0, 0.3),
            )
        if prepared.hidden:
            # On the ledger, like the gateway's findings: the record stays even if the ingest fails later.
            with ctx.ledger() as connection:
                policy.record_invisible_text(connection, ctx, prepared.hidden)
        with run.stage("ingest", chunks=len(prepared.chunks), pages=len(prepared.pages)):
            answers = read_chunks(
                ctx,
                [ChunkText(c.text, c.page) for c in prepared.chunks],
                title=_title_of(prepared),
                progress=scaled(progress, 0.3, 0.95),
            )
        progress(0.95, "Saving the document and its facts")
        try:
            with run.stage("save"):
                document = save_pdf(session, prepared)
                chunks = list_chunks(session, tenant_id=identity.tenant_id, document_id=document.id)
                extraction = keep_facts(session, document=document, chunks=chunks, answers=answers, trace_id=trace_id)
        except BaseException:
            if not blob_existed:
                # The transaction will roll back; the stored original must go with it.
                delete_blob(sha256(data).hexdigest())
            raise
        progress(
            1.0,
            f"{extraction.added} facts extracted"
            + (f", {extraction.rejected} rejected" if extraction.rejected else ""),
        )
        run.done(document_id=document.id)
    return SourceResult(document, extraction.added, extraction.rejected)


def _title_of(prepared: PreparedPdf) -> str:
    return title_of(prepared.pages) or prepared.filename
