"""Real PDFs for tests, good and bad, built with fpdf2, Pillow and pypdf (deterministic, offline)."""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

from core.pdfgen import FIXED_DATE

UNICODE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
"""A TrueType font with ligature glyphs (Debian's fonts-dejavu-core); tests needing it skip without it."""


def _new_pdf() -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=False)
    return pdf


def lines_pdf(pages: list[list[str]], *, font: Path | None = None) -> bytes:
    """One PDF page per list, each string drawn as its own line exactly where the test wants the breaks."""
    pdf = _new_pdf()
    if font is not None:
        pdf.add_font("Body", "", str(font))
        family = "Body"
    else:
        family = "Times"
    for lines in pages:
        pdf.add_page()
        pdf.set_font(family, "", 11)
        for line in lines:
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def blank_pdf(pages: int = 2) -> bytes:
    """Pages with nothing on them."""
    pdf = _new_pdf()
    for _ in range(pages):
        pdf.add_page()
    return bytes(pdf.output())


def scanned_pdf(pages: int = 2) -> bytes:
    """What a scanner produces: each page one picture of text, with no text layer."""
    pdf = _new_pdf()
    for number in range(1, pages + 1):
        image = Image.new("L", (850, 1100), color=255)
        draw = ImageDraw.Draw(image)
        for row in range(30):
            draw.text((60, 60 + row * 32), f"Page {number}: scanned line {row} about nitrate leaching.", fill=0)
        pdf.add_page()
        pdf.image(image, x=0, y=0, w=210)
    return bytes(pdf.output())


def encrypted_pdf(source: bytes, *, user_password: str = "secret", owner_password: str = "owner") -> bytes:
    """``source`` encrypted with AES-256; an empty ``user_password`` opens without asking (owner-only protection)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def truncated_pdf(source: bytes, *, keep: float = 0.6) -> bytes:
    """The first part of a real PDF, as an interrupted download leaves it."""
    return source[: int(len(source) * keep)]


def corrupt_pdf() -> bytes:
    """A PDF header followed by bytes that are no PDF structure at all."""
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
