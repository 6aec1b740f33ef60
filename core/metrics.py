"""Verification quality, aggregated in the database: sentence support rate, paragraph
verification rate and the distribution of failure modes, over the latest version of each
paragraph (what researchers actually see).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from core.models import Paragraph, ParagraphVersion, SentenceCheck


@dataclass(frozen=True)
class VerificationSummary:
    sentences: int
    supported: int
    paragraphs: int
    verified_paragraphs: int
    failure_modes: dict[str, int] = field(default_factory=dict)

    @property
    def sentence_support_rate(self) -> float | None:
        return self.supported / self.sentences if self.sentences else None

    @property
    def paragraph_verification_rate(self) -> float | None:
        return self.verified_paragraphs / self.paragraphs if self.paragraphs else None


@dataclass(frozen=True)
class SentenceRow:
    paragraph_id: int
    manuscript_id: int
    version_number: int
    ordinal: int
    text: str
    cites: list[Any]
    verdict: str
    failure_mode: str | None
    reason: str
    rewrite_rounds: int
    created_at: datetime


def _latest_versions(tenant_id: int, manuscript_id: int | None) -> Select[Any]:
    newest = (
        select(func.max(ParagraphVersion.id))
        .join(Paragraph, Paragraph.id == ParagraphVersion.paragraph_id)
        .where(ParagraphVersion.tenant_id == tenant_id, Paragraph.tenant_id == tenant_id)
        .group_by(ParagraphVersion.paragraph_id)
    )
    if manuscript_id is not None:
        newest = newest.where(Paragraph.manuscript_id == manuscript_id)
    return newest


def verification_summary(session: Session, *, tenant_id: int, manuscript_id: int | None = None) -> VerificationSummary:
    latest = _latest_versions(tenant_id, manuscript_id).scalar_subquery()
    sentences, supported = session.execute(
        select(
            func.count(SentenceCheck.id),
            func.coalesce(func.sum(case((SentenceCheck.verdict == "supported", 1), else_=0)), 0),
        ).where(SentenceCheck.tenant_id == tenant_id, SentenceCheck.version_id.in_(latest))
    ).one()
    paragraphs, verified = session.execute(
        select(
            func.count(ParagraphVersion.id),
            func.coalesce(func.sum(case((ParagraphVersion.status == "verified", 1), else_=0)), 0),
        ).where(ParagraphVersion.tenant_id == tenant_id, ParagraphVersion.id.in_(latest))
    ).one()
    modes = session.execute(
        select(SentenceCheck.failure_mode, func.count(SentenceCheck.id))
        .where(
            SentenceCheck.tenant_id == tenant_id,
            SentenceCheck.version_id.in_(latest),
            SentenceCheck.failure_mode.is_not(None),
        )
        .group_by(SentenceCheck.failure_mode)
        .order_by(func.count(SentenceCheck.id).desc())
    ).all()
    return VerificationSummary(
        sentences=int(sentences),
        supported=int(supported),
        paragraphs=int(paragraphs),
        verified_paragraphs=int(verified),
        failure_modes={str(m): int(n) for m, n in modes},
    )


def failure_modes_all_checks(session: Session, *, tenant_id: int) -> dict[str, int]:
    """Failure modes over every check ever made, rewritten drafts included (what the Writer got wrong)."""
    rows = session.execute(
        select(SentenceCheck.failure_mode, func.count(SentenceCheck.id))
        .where(SentenceCheck.tenant_id == tenant_id, SentenceCheck.failure_mode.is_not(None))
        .group_by(SentenceCheck.failure_mode)
    ).all()
    return {str(m): int(n) for m, n in rows}


def recent_sentence_checks(
    session: Session, *, tenant_id: int, manuscript_id: int | None = None, limit: int = 200
) -> list[SentenceRow]:
    query = (
        select(SentenceCheck, ParagraphVersion, Paragraph)
        .join(ParagraphVersion, ParagraphVersion.id == SentenceCheck.version_id)
        .join(Paragraph, Paragraph.id == ParagraphVersion.paragraph_id)
        .where(
            SentenceCheck.tenant_id == tenant_id,
            ParagraphVersion.tenant_id == tenant_id,
            Paragraph.tenant_id == tenant_id,
        )
        .order_by(ParagraphVersion.id.desc(), SentenceCheck.ordinal)
        .limit(limit)
    )
    if manuscript_id is not None:
        query = query.where(Paragraph.manuscript_id == manuscript_id)
    return [
        SentenceRow(
            paragraph_id=p.id,
            manuscript_id=p.manuscript_id,
            version_number=v.number,
            ordinal=s.ordinal,
            text=s.text,
            cites=list(s.cites),
            verdict=s.verdict,
            failure_mode=s.failure_mode,
            reason=s.reason,
            rewrite_rounds=s.rewrite_rounds,
            created_at=v.created_at,
        )
        for s, v, p in session.execute(query).all()
    ]
