"""False supports: sentences the workbench showed as supported that are not.

A researcher reports one from the Verification page (a golden run may file them too, with
``source="golden"``). Each report is evidence against the Verifier: the ``false_support`` alert
rule fires on any report in its window and the false supports SLO counts them; a prompt canary
that drafted the paragraph is rolled back at once (``core.deployments.after_false_support``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import deployments
from core.errors import FalseSupportError, NotFoundError
from core.models import FalseSupportReport, Paragraph, ParagraphVersion, SentenceCheck


@dataclass(frozen=True)
class ReportableSentence:
    sentence_check_id: int
    paragraph_id: int
    version_number: int
    text: str


def reportable_sentences(
    session: Session, *, tenant_id: int, manuscript_id: int | None = None, limit: int = 200
) -> list[ReportableSentence]:
    """Supported sentences of the latest version of each paragraph (what researchers see), newest first."""
    latest = (
        select(func.max(ParagraphVersion.id))
        .where(ParagraphVersion.tenant_id == tenant_id)
        .group_by(ParagraphVersion.paragraph_id)
    )
    query = (
        select(SentenceCheck.id, ParagraphVersion.paragraph_id, ParagraphVersion.number, SentenceCheck.text)
        .join(ParagraphVersion, ParagraphVersion.id == SentenceCheck.version_id)
        .join(Paragraph, Paragraph.id == ParagraphVersion.paragraph_id)
        .where(
            SentenceCheck.tenant_id == tenant_id,
            Paragraph.tenant_id == tenant_id,
            SentenceCheck.verdict == "supported",
            SentenceCheck.version_id.in_(latest.scalar_subquery()),
        )
        .order_by(ParagraphVersion.id.desc(), SentenceCheck.ordinal)
        .limit(limit)
    )
    if manuscript_id is not None:
        query = query.where(Paragraph.manuscript_id == manuscript_id)
    return [ReportableSentence(int(i), int(p), int(n), str(t)) for i, p, n, t in session.execute(query)]


def report_false_support(
    session: Session, *, tenant_id: int, user_id: int | None, sentence_check_id: int, note: str = ""
) -> FalseSupportReport:
    """Record that a sentence shown as supported is not. Raises ``NotFoundError`` for a sentence
    of another workspace, ``FalseSupportError`` for one not shown as supported or already reported
    by this user."""
    found = session.execute(
        select(SentenceCheck, ParagraphVersion)
        .join(ParagraphVersion, ParagraphVersion.id == SentenceCheck.version_id)
        .where(SentenceCheck.id == sentence_check_id, SentenceCheck.tenant_id == tenant_id)
    ).first()
    if found is None:
        raise NotFoundError(f"Sentence check {sentence_check_id} is not in this workspace; pick one from the list.")
    sentence, version = found
    if sentence.verdict != "supported":
        raise FalseSupportError(
            "This sentence was already shown as unsupported, so it cannot be a false support: only sentences "
            "shown as supported can be reported."
        )
    earlier = session.scalar(
        select(FalseSupportReport.created_at).where(
            FalseSupportReport.tenant_id == tenant_id,
            FalseSupportReport.sentence_check_id == sentence_check_id,
            FalseSupportReport.reported_by == user_id,
        )
    )
    if earlier is not None:
        raise FalseSupportError(f"You reported this sentence already, on {earlier:%Y-%m-%d %H:%M} UTC.")
    report = FalseSupportReport(
        tenant_id=tenant_id,
        sentence_check_id=sentence.id,
        paragraph_id=version.paragraph_id,
        trace_id=version.trace_id,
        source="researcher",
        note=note.strip(),
        reported_by=user_id,
    )
    session.add(report)
    session.flush()
    # A canary that drafted this paragraph is judged now, in this transaction: any false support
    # rolls it back at once rather than at the next scheduled evaluation (core.deployments).
    deployments.after_false_support(session, prompt_versions=version.prompt_versions or {})
    return report
