"""Facts: the Librarian's output, kept only when its quote is a verbatim span of the chunk.

A rejected fact is logged and stored in ``fact_rejections`` with the reason, so a
researcher (and later the ops pages) can see what the Librarian got wrong.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import gateway, policy, tracing
from core.agents.contracts import LibrarianInput, LibrarianOutput
from core.chunking import page_at
from core.complexity import chunk_complexity
from core.errors import NotFoundError
from core.models import Chunk, Document, Fact, FactRejection
from core.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FactExtraction:
    added: int
    rejected: int


def locate_quote(chunk_text: str, quote: str) -> tuple[int, str] | None:
    """Where ``quote`` stands in the chunk, and the exact text there.

    A quote may differ from the chunk only in runs of whitespace (a line break where the
    model wrote a space); anything else is not verbatim.
    """
    start = chunk_text.find(quote)
    if start >= 0:
        return start, quote
    words = quote.split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(w) for w in words)
    match = re.search(pattern, chunk_text)
    return (match.start(), match.group(0)) if match else None


@dataclass(frozen=True)
class ChunkText:
    """What the Librarian reads of a chunk (a stored row or one not yet written)."""

    text: str
    page: int


def read_chunks(
    ctx: gateway.CallContext, chunks: Sequence[ChunkText], *, title: str, progress: ProgressFn = no_progress
) -> list[LibrarianOutput]:
    """The Librarian's answer for each chunk, in order. Writes nothing but the gateway's ledger."""
    answers = []
    for number, chunk in enumerate(chunks, start=1):
        progress((number - 1) / max(len(chunks), 1), f"Extracting facts from chunk {number} of {len(chunks)}")
        ctx.complexity = chunk_complexity(chunk.text)  # each chunk is routed by its own score
        answers.append(
            gateway.run_agent(
                "librarian",
                LibrarianInput(chunk_text=chunk.text, page=chunk.page, document_title=title),
                LibrarianOutput,
                ctx=ctx,
                render={"chunk_text": chunk.text, "page": chunk.page, "document_title": title},
            )
        )
    return answers


def keep_facts(
    session: Session, *, document: Document, chunks: Sequence[Chunk], answers: Sequence[LibrarianOutput], trace_id: str
) -> FactExtraction:
    """Store each answer's facts whose quote is verbatim in its chunk; log and store the rest as rejections."""
    added = rejected = 0
    for chunk, answer in zip(chunks, answers, strict=True):
        # The input policy's instruction spans: a fact quoting one is data, never a fact (core.policy).
        flagged = policy.instruction_spans(chunk.text) if answer.facts else []
        for fact in answer.facts:
            # The Librarian read the chunk as the gateway sent it (hidden characters stripped).
            located = locate_quote(chunk.text, fact.quote) or policy.locate_in_source(
                chunk.text, fact.quote, locate_quote
            )
            reason = (
                "quote is not a verbatim span of the chunk"
                if located is None
                else policy.fact_rejection_reason(flagged, located[0], located[0] + len(located[1]), fact.text)
            )
            if reason is not None:
                rejected += 1
                log.warning(
                    "fact rejected: %s",
                    reason.split(";")[0],
                    extra={"trace_id": trace_id, "chunk_id": chunk.id},
                )
                session.add(
                    FactRejection(
                        tenant_id=document.tenant_id,
                        chunk_id=chunk.id,
                        text=fact.text,
                        quote=fact.quote,
                        reason=reason[:200],
                        trace_id=trace_id,
                    )
                )
                continue
            assert located is not None
            start, quote = located
            session.add(
                Fact(
                    tenant_id=document.tenant_id,
                    manuscript_id=document.manuscript_id,
                    document_id=document.id,
                    chunk_id=chunk.id,
                    text=fact.text,
                    quote=quote,
                    quote_start=start,
                    # The page is read off where the quote actually stands, not taken on the model's word.
                    page=page_at(chunk.page_offsets, start) if chunk.page_offsets else chunk.page,
                    kind=fact.kind,
                )
            )
            added += 1
    session.flush()
    return FactExtraction(added=added, rejected=rejected)


def extract_facts(
    session: Session,
    *,
    tenant_id: int,
    document_id: int,
    trace_id: str,
    progress: ProgressFn = no_progress,
    job_id: str | None = None,
) -> FactExtraction:
    """Let the Librarian read every chunk of a stored document (all model calls first, then the writes)."""
    document = session.scalar(select(Document).where(Document.tenant_id == tenant_id, Document.id == document_id))
    if document is None:
        raise NotFoundError(f"Document {document_id} does not exist in this workspace.")
    chunks = list(
        session.scalars(
            select(Chunk).where(Chunk.tenant_id == tenant_id, Chunk.document_id == document_id).order_by(Chunk.ordinal)
        )
    )
    ctx = gateway.CallContext(session=session, tenant_id=tenant_id, trace_id=trace_id, job_id=job_id)
    with tracing.run(ctx, "ingest", manuscript_id=document.manuscript_id, document_id=document.id) as run:
        with run.stage("ingest", chunks=len(chunks)):
            answers = read_chunks(
                ctx,
                [ChunkText(c.text, c.page) for c in chunks],
                title=document.title or document.filename,
                progress=progress,
            )
        with run.stage("save"):
            extraction = keep_facts(session, document=document, chunks=chunks, answers=answers, trace_id=trace_id)
        progress(
            1.0,
            f"{extraction.added} facts extracted"
            + (f", {extraction.rejected} rejected" if extraction.rejected else ""),
        )
        run.done(document_id=document.id)
    return extraction


def list_facts(session: Session, *, tenant_id: int, manuscript_id: int) -> list[Fact]:
    return list(
        session.scalars(
            select(Fact).where(Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id).order_by(Fact.id)
        )
    )


def parse_ref(ref: str) -> int | None:
    ref = ref.strip().upper()
    return int(ref[1:]) if ref.startswith("F") and ref[1:].isdigit() else None


def get_facts_by_ref(session: Session, *, tenant_id: int, manuscript_id: int, refs: list[str]) -> dict[str, Fact]:
    """The facts of this manuscript named by ``refs`` ("F12"); unknown refs are simply absent."""
    ids = [i for i in (parse_ref(r) for r in refs) if i is not None]
    if not ids:
        return {}
    facts = session.scalars(
        select(Fact).where(Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id, Fact.id.in_(ids))
    )
    return {f.ref: f for f in facts}


def list_rejections(session: Session, *, tenant_id: int, document_id: int) -> list[FactRejection]:
    return list(
        session.scalars(
            select(FactRejection)
            .join(Chunk, Chunk.id == FactRejection.chunk_id)
            .where(FactRejection.tenant_id == tenant_id, Chunk.document_id == document_id)
            .order_by(FactRejection.id)
        )
    )
