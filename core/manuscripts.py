"""Manuscripts and their paragraph blocks. Every function takes the tenant."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import NotFoundError, WorkbenchError
from core.models import Manuscript, Paragraph, ParagraphVersion


def create_manuscript(session: Session, *, tenant_id: int, title: str, user_id: int | None = None) -> Manuscript:
    title = title.strip()
    if not title:
        raise WorkbenchError("Give the manuscript a title.")
    manuscript = Manuscript(tenant_id=tenant_id, title=title[:300], created_by=user_id)
    session.add(manuscript)
    session.flush()
    return manuscript


def list_manuscripts(session: Session, *, tenant_id: int) -> list[Manuscript]:
    return list(session.scalars(select(Manuscript).where(Manuscript.tenant_id == tenant_id).order_by(Manuscript.id)))


def get_manuscript(session: Session, *, tenant_id: int, manuscript_id: int) -> Manuscript:
    manuscript = session.scalar(
        select(Manuscript).where(Manuscript.tenant_id == tenant_id, Manuscript.id == manuscript_id)
    )
    if manuscript is None:
        raise NotFoundError(f"Manuscript {manuscript_id} does not exist in this workspace.")
    return manuscript


def add_paragraph(session: Session, *, tenant_id: int, manuscript_id: int, brief: str) -> Paragraph:
    get_manuscript(session, tenant_id=tenant_id, manuscript_id=manuscript_id)
    brief = brief.strip()
    if not brief:
        raise WorkbenchError("Write a brief for the paragraph: what should it say?")
    position = session.scalar(
        select(func.coalesce(func.max(Paragraph.position), 0)).where(
            Paragraph.tenant_id == tenant_id, Paragraph.manuscript_id == manuscript_id
        )
    )
    paragraph = Paragraph(tenant_id=tenant_id, manuscript_id=manuscript_id, brief=brief, position=(position or 0) + 1)
    session.add(paragraph)
    session.flush()
    return paragraph


def update_brief(session: Session, *, tenant_id: int, paragraph_id: int, brief: str) -> Paragraph:
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    if not brief.strip():
        raise WorkbenchError("The brief cannot be empty.")
    paragraph.brief = brief.strip()
    session.flush()
    return paragraph


def list_paragraphs(session: Session, *, tenant_id: int, manuscript_id: int) -> list[Paragraph]:
    return list(
        session.scalars(
            select(Paragraph)
            .where(Paragraph.tenant_id == tenant_id, Paragraph.manuscript_id == manuscript_id)
            .order_by(Paragraph.position)
        )
    )


def get_paragraph(session: Session, *, tenant_id: int, paragraph_id: int) -> Paragraph:
    paragraph = session.scalar(select(Paragraph).where(Paragraph.tenant_id == tenant_id, Paragraph.id == paragraph_id))
    if paragraph is None:
        raise NotFoundError(f"Paragraph {paragraph_id} does not exist in this workspace.")
    return paragraph


def list_versions(session: Session, *, tenant_id: int, paragraph_id: int) -> list[ParagraphVersion]:
    """All versions of a paragraph, newest first."""
    return list(
        session.scalars(
            select(ParagraphVersion)
            .where(ParagraphVersion.tenant_id == tenant_id, ParagraphVersion.paragraph_id == paragraph_id)
            .order_by(ParagraphVersion.number.desc())
        )
    )


def latest_version(session: Session, *, tenant_id: int, paragraph_id: int) -> ParagraphVersion | None:
    versions = list_versions(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    return versions[0] if versions else None


def accept_version(session: Session, *, tenant_id: int, paragraph_id: int, version_id: int) -> Paragraph:
    """Mark a version as the one the manuscript uses. Only verified versions can be accepted."""
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    version = session.scalar(
        select(ParagraphVersion).where(
            ParagraphVersion.tenant_id == tenant_id,
            ParagraphVersion.paragraph_id == paragraph_id,
            ParagraphVersion.id == version_id,
        )
    )
    if version is None:
        raise NotFoundError(f"Version {version_id} does not belong to paragraph {paragraph_id}.")
    if not version.verified:
        raise WorkbenchError(
            "Only a verified version can be accepted: fix or remove the sentences marked for review, then re-verify."
        )
    paragraph.accepted_version_id = version.id
    session.flush()
    return paragraph
