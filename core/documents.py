"""Documents (uploaded PDFs) and their chunks. Every function takes the tenant.

``ingest_pdf`` is all-or-nothing: every check and the whole extraction run before anything is
written; then the original goes to the content-addressed store and the rows are flushed. If the
flush fails, a blob this call created is removed again and the error propagates; the caller owns
the transaction (``session_scope`` rolls it back), so no half-written document is ever left.

Uploading the same file (same sha256) twice to one manuscript raises ``DuplicateDocumentError``
naming the existing document, rather than silently returning it: the person uploading learns the
file was already there, and a retried job can still find the document through ``document_id``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.chunking import ChunkDraft, chunk_pages
from core.errors import DuplicateDocumentError, NotFoundError
from core.manuscripts import get_manuscript
from core.models import Chunk, Document
from core.pdf import HiddenText, check_upload, extract_pdf
from core.progress import ProgressFn, no_progress, scaled
from core.settings import get_settings
from core.storage import delete_blob, read_blob, store_blob

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200
"""Longest document title kept (the first line of a badly extracted page can be a whole paragraph)."""

FILENAME_MAX_CHARS = 255
"""Longest filename kept (the column allows 500; file systems allow 255)."""

_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]+")


def clean_filename(filename: str) -> str:
    """The file's own name: no directories (browsers may send ``C:\\fakepath\\x.pdf``), no control characters."""
    name = _UNSAFE_FILENAME.sub("", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:FILENAME_MAX_CHARS] or "document.pdf"


def title_of(pages: list[str]) -> str | None:
    """The first line of the first page with text (normalised pages have no blank lines)."""
    for page in pages:
        if page:
            line = page.split("\n", 1)[0]
            return line if len(line) <= TITLE_MAX_CHARS else line[: TITLE_MAX_CHARS - 3].rstrip() + "..."
    return None


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


@dataclass(frozen=True)
class PreparedPdf:
    """A PDF checked, extracted and chunked, nothing written yet."""

    tenant_id: int
    manuscript_id: int
    filename: str
    data: bytes
    sha256: str
    pages: list[str]
    chunks: list[ChunkDraft]
    hidden: tuple[HiddenText, ...] = ()
    """Text left out because no reader can see it (``core.pdf``); the ingest run records it."""


def ingest_pdf(
    session: Session,
    *,
    tenant_id: int,
    manuscript_id: int,
    filename: str,
    data: bytes,
    progress: ProgressFn | None = None,
) -> Document:
    """Validate, extract, chunk and store one PDF as a document of the manuscript; returns the flushed row."""
    report = progress or no_progress
    prepared = prepare_pdf(
        session,
        tenant_id=tenant_id,
        manuscript_id=manuscript_id,
        filename=filename,
        data=data,
        progress=scaled(report, 0.0, 0.9),
    )
    report(0.9, f"Saving {len(prepared.chunks)} chunk{'s' if len(prepared.chunks) != 1 else ''}")
    document = save_pdf(session, prepared)
    pages, chunks = len(prepared.pages), len(prepared.chunks)
    report(1.0, f"Ingested {pages} page{'s' if pages != 1 else ''} into {chunks} chunks")
    return document


def prepare_pdf(
    session: Session,
    *,
    tenant_id: int,
    manuscript_id: int,
    filename: str,
    data: bytes,
    progress: ProgressFn | None = None,
) -> PreparedPdf:
    """Every check, the text extraction and the chunking, reading the database but writing nothing."""
    report = progress or no_progress
    settings = get_settings()
    get_manuscript(session, tenant_id=tenant_id, manuscript_id=manuscript_id)
    filename = clean_filename(filename)
    report(0.0, f"Checking {filename}")
    check_upload(data, max_bytes=settings.max_upload_bytes, filename=filename)

    sha256 = hashlib.sha256(data).hexdigest()
    existing = session.scalar(
        select(Document).where(
            Document.tenant_id == tenant_id, Document.manuscript_id == manuscript_id, Document.sha256 == sha256
        )
    )
    if existing is not None:
        raise DuplicateDocumentError(
            f"'{filename}' is already in this manuscript (as '{existing.filename}'); there is nothing new to add.",
            document_id=existing.id,
        )

    extracted = extract_pdf(
        data, max_bytes=settings.max_upload_bytes, filename=filename, progress=scaled(report, 0.02, 0.8)
    )
    pages = extracted.pages
    blank = [number for number, text in enumerate(pages, start=1) if not text]
    if blank:
        report(0.8, f"Page{'s' if len(blank) > 1 else ''} {_page_list(blank)} had no text (scanned?) and were skipped")
    report(0.9, "Chunking")
    drafts = chunk_pages(pages, target_tokens=settings.chunk_tokens)
    report(1.0, f"{len(pages)} page{'s' if len(pages) != 1 else ''} in {len(drafts)} chunks")
    return PreparedPdf(tenant_id, manuscript_id, filename, data, sha256, pages, drafts, tuple(extracted.hidden))


def save_pdf(session: Session, prepared: PreparedPdf) -> Document:
    """Store a prepared PDF's original and flush its document and chunk rows."""
    tenant_id, sha256, pages, drafts = prepared.tenant_id, prepared.sha256, prepared.pages, prepared.chunks
    filename, data = prepared.filename, prepared.data
    _sha, _path, created = store_blob(data)
    try:
        document = Document(
            tenant_id=tenant_id,
            manuscript_id=prepared.manuscript_id,
            filename=filename,
            sha256=sha256,
            size_bytes=len(data),
            page_count=len(pages),
            title=title_of(pages),
        )
        session.add(document)
        session.flush()
        session.add_all(
            [
                Chunk(
                    tenant_id=tenant_id,
                    document_id=document.id,
                    ordinal=draft.ordinal,
                    page=draft.page,
                    page_end=draft.page_end,
                    text=draft.text,
                    token_count=draft.token_count,
                    page_offsets=draft.page_offsets,
                )
                for draft in drafts
            ]
        )
        session.flush()
    except BaseException:
        if created:
            # Another document may share an existing blob, so only a blob this call made is removed.
            delete_blob(sha256)
        raise
    log.info("ingested %s (%d pages, %d chunks) as document %d", filename, len(pages), len(drafts), document.id)
    return document


def list_documents(session: Session, *, tenant_id: int, manuscript_id: int) -> list[Document]:
    return list(
        session.scalars(
            select(Document)
            .where(Document.tenant_id == tenant_id, Document.manuscript_id == manuscript_id)
            .order_by(Document.id)
        )
    )


def get_document(session: Session, *, tenant_id: int, document_id: int) -> Document:
    document = session.scalar(select(Document).where(Document.tenant_id == tenant_id, Document.id == document_id))
    if document is None:
        raise NotFoundError(f"Document {document_id} does not exist in this workspace.")
    return document


def list_chunks(session: Session, *, tenant_id: int, document_id: int) -> list[Chunk]:
    return list(
        session.scalars(
            select(Chunk).where(Chunk.tenant_id == tenant_id, Chunk.document_id == document_id).order_by(Chunk.ordinal)
        )
    )


def get_chunk(session: Session, *, tenant_id: int, chunk_id: int) -> Chunk:
    chunk = session.scalar(select(Chunk).where(Chunk.tenant_id == tenant_id, Chunk.id == chunk_id))
    if chunk is None:
        raise NotFoundError(f"Chunk {chunk_id} does not exist in this workspace.")
    return chunk


def read_original(session: Session, *, tenant_id: int, document_id: int) -> bytes:
    """The uploaded PDF's bytes, for showing or downloading the source."""
    return read_blob(get_document(session, tenant_id=tenant_id, document_id=document_id).sha256)
