"""Adding a source to a manuscript: ingest the PDF, then let the Librarian read every chunk.

Both steps run in the caller's transaction: a file that fails anywhere leaves no document,
no chunks, no facts and no stored original behind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from hashlib import sha256

from sqlalchemy.orm import Session

from core.documents import ingest_pdf
from core.facts import extract_facts
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
) -> SourceResult:
    trace_id = trace_id or uuid.uuid4().hex
    blob_existed = blob_path(sha256(data).hexdigest()).exists()
    try:
        document = ingest_pdf(
            session,
            tenant_id=identity.tenant_id,
            manuscript_id=manuscript_id,
            filename=filename,
            data=data,
            progress=scaled(progress, 0.0, 0.5),
        )
        extraction = extract_facts(
            session,
            tenant_id=identity.tenant_id,
            document_id=document.id,
            trace_id=trace_id,
            progress=scaled(progress, 0.5, 1.0),
            job_id=job_id,
        )
    except BaseException:
        if not blob_existed:
            # The transaction will roll back; the stored original must go with it.
            delete_blob(sha256(data).hexdigest())
        raise
    return SourceResult(document, extraction.added, extraction.rejected)
