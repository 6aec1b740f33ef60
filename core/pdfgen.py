"""Render a simple paper-like PDF with fpdf2's core fonts: deterministic bytes, no downloads.

Used by the demo corpus (and by tests that need real PDFs). Core fonts are Latin-1 only, so the
text given here must be encodable as Latin-1; ``render_paper`` refuses anything else up front
rather than letting fpdf2 fail halfway through a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fpdf import FPDF

FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)
"""Creation date written into every generated PDF, so the same input gives the same bytes (and sha256)."""

_BODY_FONT = "Times"
_BODY_SIZE = 11
_LINE_MM = 5.5


@dataclass(frozen=True)
class Paper:
    """The parts of a short research paper, in reading order."""

    title: str
    authors: str
    affiliation: str
    note: str
    abstract: str
    keywords: str
    sections: tuple[tuple[str, tuple[str, ...]], ...]
    """(heading, paragraphs) pairs: Introduction, Methods, Results, Discussion, References..."""


class _PaperPDF(FPDF):
    def footer(self) -> None:
        # A bare page number, as journals print it; ingestion must cope with such lines.
        self.set_y(-15)
        self.set_font(_BODY_FONT, "", 9)
        self.cell(0, 10, str(self.page_no()), align="C")


def _check_latin1(paper: Paper) -> None:
    parts = [paper.title, paper.authors, paper.affiliation, paper.note, paper.abstract, paper.keywords]
    for heading, paragraphs in paper.sections:
        parts.append(heading)
        parts.extend(paragraphs)
    for part in parts:
        try:
            part.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValueError(f"core PDF fonts cannot encode {part[exc.start : exc.end]!r} in: {part[:60]!r}") from exc


def render_paper(paper: Paper) -> bytes:
    """The paper as PDF bytes; identical input gives identical bytes."""
    _check_latin1(paper)
    pdf = _PaperPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(paper.title)
    pdf.set_author(paper.authors)
    pdf.set_creator("OpusBlocks Workbench demo corpus")
    pdf.set_margins(22, 22, 22)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    def block(text: str, style: str = "", size: float = _BODY_SIZE, height: float = _LINE_MM, gap: float = 0) -> None:
        pdf.set_font(_BODY_FONT, style, size)
        pdf.multi_cell(0, height, text, new_x="LMARGIN", new_y="NEXT")
        if gap:
            pdf.ln(gap)

    block(paper.title, "B", 16, 7.5, gap=2)
    block(paper.authors, "I", 11, gap=0)
    block(paper.affiliation, "", 10, 5, gap=0)
    block(paper.note, "I", 9, 4.5, gap=4)
    block("Abstract", "B", 12, 6, gap=1)
    block(paper.abstract, gap=2)
    block(paper.keywords, "", 10, 5, gap=4)
    for heading, paragraphs in paper.sections:
        block(heading, "B", 12, 6, gap=1)
        for paragraph in paragraphs:
            block(paragraph, gap=2)
        pdf.ln(2)
    return bytes(pdf.output())
