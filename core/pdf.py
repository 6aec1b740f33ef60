"""Validate an uploaded PDF and extract its text, one string per page.

What comes out of here is the canonical text of the document: chunks are cut from it and facts
quote it verbatim, so normalisation is deliberately moderate and happens exactly once:

* ligatures (``ﬁ``) become their letters, soft and Unicode hyphens become ``-``, NUL and other
  control characters go (PostgreSQL cannot store NUL), every run of spaces becomes one space;
* a line wrapped inside a paragraph is joined with a space, a word hyphenated across a line
  break is rejoined (``treat-\\nment`` -> ``treatment``, but ``drought-\\ntolerant`` keeps its
  hyphen when the document shows it is a compound);
* headings and paragraph ends stay on their own lines, and a bare page number printed at the top
  or bottom of a page is dropped;
* text a reader cannot see (white or see-through fill, a font under 1 pt, squeezed under 5 % width,
  render mode 3 or 7) is left out: the
  Librarian must not quote what nobody can find in the PDF. What was left out is reported beside
  the pages (``HiddenText``: page, kind, length, sha256, never the text), and the ingest run
  records it as an ``input.invisible_text`` policy violation. The invisible text layer of an
  OCR'd scan (render mode 3 over a page-sized image) is what a reader sees and is kept.

Everything else (words, numbers, punctuation) is kept exactly as pypdf extracts it. The work is
one pypdf pass per page plus a few regex passes and a loop over lines, never over characters, so
ingestion stays close to raw ``extract_text`` speed (see ``bench/ingest.py``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from pypdf import PageObject, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError
from pypdf.generic import ArrayObject, ByteStringObject, DictionaryObject

from core.errors import (
    ConfigurationError,
    CorruptPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    FileTooLargeError,
    NotAPdfError,
    WorkbenchError,
)
from core.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

HEADER_WINDOW = 1024
"""Bytes at the start of a file searched for ``%PDF-``; PDF readers allow some junk before it."""

WRAPPED_LINE_RATIO = 0.75
"""A line at least this fraction of the page's usual line length is taken to wrap into the next."""

# Signatures of files people upload by mistake, to say what the file is instead of "not a PDF".
_KNOWN_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP-based file (Word .docx, PowerPoint or a .zip)"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file (.doc)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"{\\rtf", "an RTF document"),
    (b"<!DOCTYPE html", "a web page"),
    (b"<html", "a web page"),
)

_CHAR_MAP: dict[int, str | None] = {
    0xFB00: "ff",
    0xFB01: "fi",
    0xFB02: "fl",
    0xFB03: "ffi",
    0xFB04: "ffl",
    0xFB05: "st",
    0xFB06: "st",
    0x2010: "-",  # Unicode hyphen and non-breaking hyphen look like "-"; quoting them must not fail
    0x2011: "-",
    0x00AD: None,  # soft hyphens left inside a line are invisible in print
    0x200B: None,
    0xFEFF: None,
    ord("\r"): "\n",
}
_CHAR_MAP.update({c: None for c in range(0x20) if chr(c) not in "\t\n\r\x0b\x0c"})
_TRANSLATION = str.maketrans(_CHAR_MAP)

_SOFT_HYPHEN_BREAK = re.compile("\u00ad[^\\S\n]*\n[^\\S\n]*")
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PAGE_NUMBER_LINE = re.compile(r"(?:page )?\d{1,3}(?: (?:of|/) \d{1,3})?", re.IGNORECASE)
_HYPHEN_PAIR = re.compile(r"(\w+)-(?=(\w+))")
_LAST_WORD = re.compile(r"(\w+)-$")
_FIRST_WORD = re.compile(r"\w+")
_BROKEN_WORD = re.compile(r"\w+-\n\w+")
_WORD = re.compile(r"\w+")
_KEYWORDS_LINE = re.compile(r"(?:keywords|key words|index terms)\b", re.IGNORECASE)
_HEADING_LINE = re.compile(
    r"(?:\d+(?:\.\d+)*\.? +[A-Z]|(?:abstract|introduction|background|(?:materials and )?methods|results"
    r"|discussion|conclusions?|references|bibliography|acknowledge?ments)\b)",
    re.IGNORECASE,
)
_TERMINAL = ".!?:"
_CLOSERS = ")]\"'\u2019\u201d"
_HEADING_END = ".!?:;,"


def display_name(filename: str | None) -> str:
    return f"'{filename}'" if filename else "The file"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.3g}"


def check_upload(data: bytes, *, max_bytes: int, filename: str | None = None) -> None:
    """Cheap checks before any parsing: not empty, not too large, looks like a PDF."""
    name = display_name(filename)
    if not data:
        raise NotAPdfError(f"{name} is empty (0 bytes): the upload may have been interrupted. Upload it again.")
    if len(data) > max_bytes:
        raise FileTooLargeError(
            f"{name} is {_megabytes(len(data))} MB; the limit is {_megabytes(max_bytes)} MB. Split the PDF or "
            "compress its images, or ask an administrator to raise WORKBENCH_MAX_UPLOAD_MB."
        )
    if b"%PDF-" not in data[:HEADER_WINDOW]:
        head = data[:64].lstrip()
        what = next((label for sig, label in _KNOWN_SIGNATURES if head.lower().startswith(sig.lower())), None)
        detail = f"it looks like {what}" if what else "it does not start with %PDF-"
        raise NotAPdfError(f"{name} is not a PDF ({detail}). Export or save it as PDF and upload that file.")


@contextmanager
def _reading(name: str, where: str = "") -> Iterator[None]:
    # pypdf signals a damaged file with many exception types (PdfReadError, KeyError, ValueError,
    # zlib and struct errors...), so anything it raises while reading means "cannot be read".
    try:
        yield
    except WorkbenchError:
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedPdfError(_encrypted_message(name)) from exc
    except Exception as exc:
        # A damaged upload is the user's problem to fix, not an incident: log it quietly.
        log.info("pypdf could not read %s%s: %r", name, where, exc)
        detail = f"{type(exc).__name__}: {exc}"
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise CorruptPdfError(
            f"{name} is damaged or incomplete{where} and could not be read ({detail}). "
            "Download or export it again and upload the new copy."
        ) from exc


def _encrypted_message(name: str) -> str:
    return (
        f"{name} is password-protected. Open it in a PDF viewer, save a copy without the password "
        "(printing to PDF works), and upload that copy."
    )


def _open(data: bytes, name: str) -> PdfReader:
    with _reading(name):
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" only to restrict printing or copying, with an empty user
            # password; every viewer opens them without asking, so we read them too.
            try:
                opened = reader.decrypt("")
            except DependencyError as exc:
                raise ConfigurationError(
                    "Reading this encrypted PDF needs the 'cryptography' package: install requirements.txt."
                ) from exc
            except Exception as exc:
                raise EncryptedPdfError(_encrypted_message(name)) from exc
            if not opened:
                raise EncryptedPdfError(_encrypted_message(name))
        return reader


def _has_images(reader: PdfReader) -> bool:
    try:
        for page in reader.pages:
            resources = page.get("/Resources")
            xobjects = resources.get_object().get("/XObject") if resources is not None else None
            if xobjects is None:
                continue
            for ref in xobjects.get_object().values():
                xobject = ref.get_object()
                if isinstance(xobject, DictionaryObject) and xobject.get("/Subtype") == "/Image":
                    return True
    except Exception:  # only used to word an error message; a damaged resource dict just means "unknown"
        return False
    return False


@dataclass(frozen=True)
class HiddenText:
    """Text of one page that pypdf extracts but a reader cannot see, left out of the page text.

    Only its page, how it was hidden, its length and its sha256 are kept: the text itself is an
    attacker's, and the sha256 lets a reviewer match it to the PDF without storing it."""

    page: int
    kinds: frozenset[str]
    """``white``, ``tiny`` or ``invisible`` (render mode 3 or 7)."""
    chars: int
    sha256: str


@dataclass(frozen=True)
class PdfText:
    pages: list[str]
    """The normalised text of each page, in page order (index 0 is page 1); ``""`` for a page without text."""
    hidden: list[HiddenText]


def extract_pages(
    data: bytes, *, max_bytes: int, filename: str | None = None, progress: ProgressFn | None = None
) -> list[str]:
    """The normalised text of each page, in page order (index 0 is page 1); see ``extract_pdf``."""
    return extract_pdf(data, max_bytes=max_bytes, filename=filename, progress=progress).pages


def extract_pdf(
    data: bytes, *, max_bytes: int, filename: str | None = None, progress: ProgressFn | None = None
) -> PdfText:
    """The normalised text of each page, and what was left out of it because no reader can see it.

    Raises ``NotAPdfError``, ``FileTooLargeError``, ``EncryptedPdfError``, ``CorruptPdfError`` or
    ``EmptyPdfError`` with a message that says what to do. A page without text gives ``""``.
    """
    report = progress or no_progress
    name = display_name(filename)
    check_upload(data, max_bytes=max_bytes, filename=filename)
    reader = _open(data, name)
    with _reading(name):
        pages = reader.pages
        total = len(pages)
    if total == 0:
        raise EmptyPdfError(f"{name} has no pages. Check that you picked the right file.")
    raw: list[str] = []
    hidden: list[HiddenText] = []
    for number in range(1, total + 1):
        report((number - 1) / total, f"Reading page {number} of {total}")
        with _reading(name, f" (page {number})"):
            text, left_out = read_page(pages[number - 1], number)
        raw.append(text)
        if left_out is not None:
            hidden.append(left_out)
    report(1.0, f"Read {total} page{'s' if total != 1 else ''}")
    texts = normalise_pages(raw)
    if not any(texts):
        if _has_images(reader):
            raise EmptyPdfError(
                f"{name} has no text layer: its pages are images, so it looks like a scanned document. Run OCR "
                "on it first (for example with ocrmypdf, or 'Recognize text' in Acrobat) and upload the result."
            )
        raise EmptyPdfError(
            f"{name} has no extractable text on any of its {total} page{'s' if total != 1 else ''}. If it is a "
            "scan, run OCR on it first (for example with ocrmypdf); otherwise check that you picked the right file."
        )
    return PdfText(texts, hidden)


# --- text a reader cannot see -------------------------------------------------------------------

WHITE_LEVEL = 0.95
"""A fill at least this light (gray, each RGB channel; CMYK at most 1 - this in every ink) is white on paper."""
MIN_VISIBLE_PT = 1.0
"""Text whose effective size (font size times the text and user matrices' scale) is below this is unreadable."""
SCAN_COVERAGE = 0.5
"""An image covering at least this share of the page makes render-mode-3 text an OCR layer, not a hiding place."""
MIN_ALPHA = 0.05
"""A fill or stroke opacity (``/ca``, ``/CA`` of an ExtGState set with ``gs``) at most this is see-through."""
MIN_STRETCH_PERCENT = 5.0
"""Horizontal scaling (``Tz``) under this squeezes a line into a sliver nobody can read."""

_SHOWS = frozenset({b"Tj", b"TJ", b"'", b'"'})
_COMPONENTS = {"/DeviceGray": 1, "/CalGray": 1, "/G": 1, "/DeviceRGB": 3, "/CalRGB": 3, "/RGB": 3}
_COMPONENTS |= {"/DeviceCMYK": 4, "/CMYK": 4}


def _is_white(values: list[Any]) -> bool:
    try:
        levels = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    if len(levels) == 1 or len(levels) == 3:
        return min(levels) >= WHITE_LEVEL
    if len(levels) == 4:
        return max(levels) <= 1 - WHITE_LEVEL
    return False


class _Ink:
    """pypdf visitor: follows the graphics state and blanks the text shows on one side of "can a reader see it".

    pypdf joins the text of consecutive shows before ``visitor_text`` sees it, so a hidden word inside
    a visible line cannot be told apart there; instead each show operator is judged in
    ``visitor_operand_before`` and its string emptied in place when its text must not be extracted.
    Only numbers are compared per operator, so a page costs about as much as ``extract_text`` alone.
    """

    def __init__(self, page: PageObject, *, keep_hidden: bool, ocr_layer: bool) -> None:
        self.keep_hidden = keep_hidden
        self.ocr_layer = ocr_layer
        """Treat render mode 3 as visible (the page is a scan with a text layer)."""
        self.kinds: set[str] = set()
        self.deferred = False
        """Render-mode-3 text was kept because the page may be a scan."""
        self.covered = False
        """An image covering most of the page was drawn."""
        # fill white, stroke white, fill components, stroke components, render mode, font size,
        # fill see-through, stroke see-through, horizontal scaling in percent
        self.state: list[Any] = [False, False, 1, 1, 0, 1.0, False, False, 100.0]
        self.stack: list[list[Any]] = []
        self.forms: list[int] = []
        resources = page.get("/Resources")
        self.resources = resources.get_object() if resources is not None else DictionaryObject()
        box = page.mediabox
        self.page_area = abs(float(box.width) * float(box.height)) or 1.0

    def before(self, op: bytes, operands: list[Any], cm: list[float], tm: list[float]) -> None:
        state = self.state
        if op in _SHOWS:
            kind = self._hidden_kind(cm, tm)
            if (kind is not None) != self.keep_hidden and operands:
                if op == b"TJ":
                    operands[0] = ArrayObject()
                else:
                    operands[-1] = ByteStringObject(b"")
            if kind is not None:
                self.kinds.add(kind)
        elif op == b"q":
            self.stack.append(state.copy())
        elif op == b"Q":
            if self.stack:
                self.state = self.stack.pop()
        elif op == b"Tf":
            if len(operands) > 1 and isinstance(operands[1], int | float):
                state[5] = abs(float(operands[1]))
        elif op == b"Tz":
            if operands and isinstance(operands[0], int | float):
                state[8] = abs(float(operands[0]))
        elif op == b"gs":
            fill_alpha, stroke_alpha = self._alphas(operands[0] if operands else None)
            if fill_alpha is not None:
                state[6] = fill_alpha <= MIN_ALPHA
            if stroke_alpha is not None:
                state[7] = stroke_alpha <= MIN_ALPHA
        elif op == b"Tr":
            if operands and isinstance(operands[0], int | float):
                state[4] = int(operands[0])
        elif op in (b"g", b"rg", b"k"):
            state[0] = _is_white(operands)
        elif op in (b"G", b"RG", b"K"):
            state[1] = _is_white(operands)
        elif op in (b"sc", b"scn", b"SC", b"SCN"):
            fill = op.islower()
            components = state[2 if fill else 3]
            white = len(operands) == components and _is_white(operands)
            state[0 if fill else 1] = white
        elif op in (b"cs", b"CS"):
            # A new colour space starts at its initial colour (black for the device spaces).
            state[2 if op == b"cs" else 3] = self._components(operands[0] if operands else None)
            state[0 if op == b"cs" else 1] = False
        elif op == b"Do":
            self.forms.append(len(self.stack))
            self.stack.append(state.copy())
            if not self.covered and abs(cm[0] * cm[3] - cm[1] * cm[2]) >= SCAN_COVERAGE * self.page_area:
                self.covered = self._is_image(operands[0] if operands else None)

    def after(self, op: bytes, operands: list[Any], cm: list[float], tm: list[float]) -> None:
        # A form XObject runs inside its own saved graphics state: undo whatever it left behind.
        if op == b"Do" and self.forms:
            depth = self.forms.pop()
            self.state = self.stack[depth]
            del self.stack[depth:]

    def _hidden_kind(self, cm: list[float], tm: list[float]) -> str | None:
        fill_white, stroke_white, _, _, mode, size, fill_clear, stroke_clear, stretch = self.state
        if mode == 3 or mode == 7:
            if not self.ocr_layer:
                return "invisible"
            self.deferred = True
        # Modes 0/4 fill, 1/5 stroke, 2/6 both: text is hidden if every way it is painted is hidden.
        elif (fill_clear or mode in (1, 5)) and (stroke_clear or mode in (0, 4)):
            return "transparent"
        elif (fill_white or mode in (1, 5)) and (stroke_white or mode in (0, 4)):
            return "white"
        if stretch < MIN_STRETCH_PERCENT:
            return "squeezed"
        scale = abs((tm[0] * tm[3] - tm[1] * tm[2]) * (cm[0] * cm[3] - cm[1] * cm[2]))
        if size * size * scale < MIN_VISIBLE_PT * MIN_VISIBLE_PT:
            return "tiny"
        return None

    def _alphas(self, name: Any) -> tuple[float | None, float | None]:
        """The fill and stroke opacity a ``gs`` sets (None where it leaves them as they are)."""
        try:
            states = self.resources.get("/ExtGState")
            state = states.get_object()[name].get_object() if states is not None else None
            if not isinstance(state, DictionaryObject):
                return None, None
            fill, stroke = state.get("/ca"), state.get("/CA")
            return (
                float(fill) if isinstance(fill, int | float) else None,
                float(stroke) if isinstance(stroke, int | float) else None,
            )
        except Exception:  # an unresolvable graphics state is simply not known to hide anything
            return None, None

    def _components(self, name: Any) -> int:
        if name in _COMPONENTS:
            return _COMPONENTS[name]
        try:  # a named colour space: an ICC profile says how many components it has
            spaces = self.resources.get("/ColorSpace")
            space = spaces.get_object()[name].get_object() if spaces is not None else None
            if isinstance(space, ArrayObject) and space and space[0] == "/ICCBased":
                return int(space[1].get_object().get("/N", 0))
        except Exception:  # an unresolvable colour space is simply not known to be white
            return 0
        return 0

    def _is_image(self, name: Any) -> bool:
        try:
            xobjects = self.resources.get("/XObject")
            xobject = xobjects.get_object()[name].get_object() if xobjects is not None else None
            return isinstance(xobject, DictionaryObject) and xobject.get("/Subtype") == "/Image"
        except Exception:  # a broken resource is not a scan
            return False


def _page_has_images(page: PageObject) -> bool:
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    if xobjects is None:
        return False
    return any(
        isinstance(x := ref.get_object(), DictionaryObject) and x.get("/Subtype") == "/Image"
        for ref in xobjects.get_object().values()
    )


def _extract(page: PageObject, *, keep_hidden: bool, ocr_layer: bool) -> tuple[str, _Ink]:
    ink = _Ink(page, keep_hidden=keep_hidden, ocr_layer=ocr_layer)
    text = page.extract_text(visitor_operand_before=ink.before, visitor_operand_after=ink.after)
    return text, ink


def read_page(page: PageObject, number: int) -> tuple[str, HiddenText | None]:
    """pypdf's text of the page without what a reader cannot see, and what was left out.

    One extraction for an ordinary page; a second (the hidden text alone, for its length and sha256)
    only when something is hidden, and a third when a page with images turns out not to be a scan.
    """
    text, ink = _extract(page, keep_hidden=False, ocr_layer=_page_has_images(page))
    if ink.deferred and not ink.covered:
        text, ink = _extract(page, keep_hidden=False, ocr_layer=False)
    if not ink.kinds:
        return text, None
    hidden, _ = _extract(page, keep_hidden=True, ocr_layer=ink.ocr_layer)
    hidden = " ".join(_clean_lines(hidden))
    if not hidden:
        return text, None  # only spaces were hidden
    log.info("page %d: %d characters a reader cannot see left out (%s)", number, len(hidden), sorted(ink.kinds))
    digest = hashlib.sha256(hidden.encode("utf-8", "surrogatepass")).hexdigest()
    return text, HiddenText(number, frozenset(ink.kinds), len(hidden), digest)


# --- normalisation -----------------------------------------------------------------------------


def _clean_lines(raw: str) -> list[str]:
    """Characters normalised, spaces collapsed, one stripped non-empty line per element."""
    if "\u00ad" in raw:
        raw = _SOFT_HYPHEN_BREAK.sub("", raw)
    text = _INLINE_SPACE.sub(" ", raw.translate(_TRANSLATION))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a broken ToUnicode map cannot be stored
        text = _SURROGATE.sub("\ufffd", text)
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    # A bare page number printed as a header or footer is not part of any sentence.
    if lines and _PAGE_NUMBER_LINE.fullmatch(lines[-1]):
        lines.pop()
    if lines and _PAGE_NUMBER_LINE.fullmatch(lines[0]):
        lines.pop(0)
    return lines


class _HyphenEvidence:
    """What the document itself says about words broken at a hyphen, gathered once and lazily."""

    def __init__(self, pages: list[list[str]]) -> None:
        self._pages = pages
        self._built = False
        self.compounds: set[str] = set()
        self.words: set[str] = set()

    def keep_hyphen(self, before: str, after: str) -> bool:
        if not self._built:
            text = "\n".join("\n".join(lines) for lines in self._pages).lower()
            # Only evidence from unbroken text counts: the fragments of the breaks themselves prove nothing.
            text = _BROKEN_WORD.sub(" ", text)
            self.compounds = {f"{m.group(1)}-{m.group(2)}" for m in _HYPHEN_PAIR.finditer(text)}
            self.words = set(_WORD.findall(text))
            self._built = True
        before, after = before.lower(), after.lower()
        if f"{before}-{after}" in self.compounds:
            return True  # written with a hyphen elsewhere in the document: a compound
        if before + after in self.words:
            return False  # written as one word elsewhere: typesetter's hyphenation
        # "drought-|tolerant": a real word after the break suggests a compound; "treat-|ment": it does not.
        return after in self.words


def _is_terminal(line: str) -> bool:
    return line.rstrip(_CLOSERS)[-1:] in _TERMINAL


def _reflow(lines: list[str], evidence: _HyphenEvidence) -> str:
    """Join the lines of one page: wrapped lines with a space, headings and paragraph ends with a newline."""
    if not lines:
        return ""
    lengths = sorted(len(line) for line in lines)
    wide = WRAPPED_LINE_RATIO * lengths[((len(lengths) - 1) * 9 + 5) // 10]  # ~90th percentile
    parts = [lines[0]]
    for prev, line in pairwise(lines):
        if prev[-1] == "-" and len(prev) > 1 and prev[-2].isalnum():
            # A line ending inside a hyphenated word continues on the next line, whatever its length.
            if line[0].islower():
                before = _LAST_WORD.search(prev)
                after = _FIRST_WORD.match(line)
                if before and after and not evidence.keep_hyphen(before.group(1), after.group(0)):
                    parts[-1] = parts[-1][:-1]
            parts.append(line)
            continue
        if line[0].islower():
            wraps = True  # a line starting in lower case continues a sentence (or a title)
        elif _KEYWORDS_LINE.match(line) or (
            len(line) < wide and line[-1] not in _HEADING_END and _HEADING_LINE.match(line)
        ):
            wraps = False  # "Keywords: ..." and section headings start their own line
        else:
            # A long line wraps into the next one, unless it ends a sentence and a heading-like line follows.
            wraps = len(prev) >= wide and not (_is_terminal(prev) and len(line) < wide and line[-1] not in _HEADING_END)
        parts.append(" " if wraps else "\n")
        parts.append(line)
    return "".join(parts)


def normalise_pages(raw_pages: list[str]) -> list[str]:
    """Normalise pypdf's text of every page of one document (see the module docstring)."""
    cleaned = [_clean_lines(raw) for raw in raw_pages]
    evidence = _HyphenEvidence(cleaned)
    return [_reflow(lines, evidence) for lines in cleaned]
