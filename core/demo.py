"""A demo manuscript seeded from PDFs the project generates itself (no downloads)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.demo_corpus import DEMO_BRIEFS, DEMO_MANUSCRIPT_TITLE, demo_pdfs
from core.manuscripts import add_paragraph, create_manuscript
from core.models import Manuscript
from core.pipeline import draft_paragraph, new_trace_id
from core.progress import ProgressFn, no_progress
from core.sources import add_source
from core.tenancy import Identity


def demo_exists(session: Session, *, tenant_id: int) -> bool:
    return (
        session.scalar(
            select(Manuscript.id).where(Manuscript.tenant_id == tenant_id, Manuscript.title == DEMO_MANUSCRIPT_TITLE)
        )
        is not None
    )


def seed_demo(
    session: Session, *, identity: Identity, draft: bool = True, progress: ProgressFn = no_progress
) -> Manuscript:
    """A manuscript with the three demo papers read, one paragraph per demo brief, the first drafted.

    Commits after each step: every model call must run outside a write transaction (the
    gateway's ledger writes on its own connection), so the steps cannot share one.
    """
    manuscript = create_manuscript(
        session, tenant_id=identity.tenant_id, title=DEMO_MANUSCRIPT_TITLE, user_id=identity.user_id
    )
    session.commit()
    papers = demo_pdfs()
    for number, (filename, data) in enumerate(papers, start=1):
        progress((number - 1) / (len(papers) + 1), f"Reading {filename}")
        add_source(
            session,
            identity=identity,
            manuscript_id=manuscript.id,
            filename=filename,
            data=data,
            trace_id=new_trace_id(),
        )
        session.commit()
    paragraphs = [
        add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=brief)
        for brief in DEMO_BRIEFS
    ]
    session.commit()
    if draft:
        progress(len(papers) / (len(papers) + 1), "Drafting the first paragraph")
        draft_paragraph(session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraphs[0].id)
    progress(1.0, "Demo ready")
    return manuscript
