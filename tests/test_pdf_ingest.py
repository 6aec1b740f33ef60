"""PDF ingestion against real PDFs and the real database: anchors, tokens, blobs, failures, tenancy."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import core.documents as documents
from core.chunking import ChunkDraft, chunk_pages, page_at
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.documents import get_chunk, get_document, ingest_pdf, list_chunks, list_documents, read_original
from core.errors import (
    CorruptPdfError,
    DuplicateDocumentError,
    EmptyPdfError,
    EncryptedPdfError,
    FileTooLargeError,
    IngestError,
    NotAPdfError,
    NotFoundError,
)
from core.manuscripts import create_manuscript
from core.models import Chunk, Document
from core.pdf import extract_pages, extract_pdf, normalise_pages
from core.settings import get_settings, reset_settings
from core.storage import blob_path, delete_blob, read_blob, store_blob
from core.tenancy import Identity, create_tenant
from core.tokens import count_tokens
from tests import pdf_factory

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LEACHING_PDF = "okafor-2022-biochar-nitrate-leaching.pdf"
PAGE_1_SENTENCE = (
    "Cumulative nitrate leaching over the three years averaged 142 kg N/ha in unamended sandy plots and "
    "109 kg N/ha in sandy plots with 20 t/ha biochar, a reduction of 23% (p = 0.004)."
)
PAGE_2_SENTENCE = (
    "In loamy plots, leaching was lower overall, at 61 kg N/ha in the controls, and biochar did not change it "
    "at either rate (p = 0.71)."
)
ACROSS_PAGES_SENTENCE = "Compost did not reduce leaching (p = 0.57) and increased it by 6% in 2021."


def _demo(name: str = LEACHING_PDF) -> bytes:
    return dict(demo_pdfs())[name]


def _blob_files() -> set[Path]:
    root = get_settings().blob_dir
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _counts(session: Session) -> tuple[int, int]:
    documents_n = session.scalar(select(func.count()).select_from(Document)) or 0
    chunks_n = session.scalar(select(func.count()).select_from(Chunk)) or 0
    return documents_n, chunks_n


@pytest.fixture
def manuscript_id(session: Session, identity: Identity) -> int:
    manuscript = create_manuscript(session, tenant_id=identity.tenant_id, title="Drought", user_id=identity.user_id)
    session.commit()
    return manuscript.id


@pytest.fixture
def fresh_blobs() -> Iterator[None]:
    """Start without any blob, so "created" is predictable whatever ran before."""
    for path in _blob_files():
        path.unlink()
    yield


@pytest.fixture
def one_mb_limit() -> Iterator[None]:
    saved = os.environ.get("WORKBENCH_MAX_UPLOAD_MB")
    os.environ["WORKBENCH_MAX_UPLOAD_MB"] = "1"
    reset_settings()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WORKBENCH_MAX_UPLOAD_MB", None)
        else:
            os.environ["WORKBENCH_MAX_UPLOAD_MB"] = saved
        reset_settings()


# --- the demo corpus ---------------------------------------------------------------------------


def test_demo_pdfs_are_small_papers_with_stable_bytes() -> None:
    pdfs = demo_pdfs()
    assert [name for name, _ in pdfs] == [
        "okafor-2022-biochar-nitrate-leaching.pdf",
        "brandt-2023-drought-soil-bacteria.pdf",
        "veerman-2024-bacillus-inoculant-maize.pdf",
    ]
    # Same bytes in a fresh interpreter (a new process, a new fpdf2 instance, another clock).
    script = (
        "import hashlib; from core.demo_corpus import demo_pdfs; "
        "print(' '.join(hashlib.sha256(d).hexdigest() for _, d in demo_pdfs()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert other == [hashlib.sha256(data).hexdigest() for _, data in pdfs]
    for name, data in pdfs:
        pages = extract_pages(data, max_bytes=10**7, filename=name)
        assert 2 <= len(pages) <= 4, name
        text = "\n".join(pages)
        for section in ("Abstract", "Methods", "Results", "Discussion"):
            assert section in text, (name, section)
    assert len(DEMO_BRIEFS) >= 2 and all(len(brief) > 40 for brief in DEMO_BRIEFS)


def test_demo_corpus_carries_checkable_facts() -> None:
    text = " ".join(" ".join(extract_pages(data, max_bytes=10**7)) for _, data in demo_pdfs())
    for fact in (
        "reduced cumulative nitrate leaching by 23%",  # a number with a unit of change
        "(p = 0.004)",  # a p-value
        "48 plots",  # a sample size
        "2019-2021",  # years
        "Maize grain yield did not change with biochar",  # a negation
        "biochar may buffer nitrogen losses",  # a hedge
        "In loamy soils, neither biochar rate changed nitrate leaching",  # a scoped claim
        "outperformed compost",  # a comparison
        "35 degrees C",  # a temperature in Latin-1-safe spelling
    ):
        assert fact in text, fact


# --- ingesting real PDFs -----------------------------------------------------------------------


def test_demo_pdfs_ingest_with_page_anchors_tokens_and_blobs(
    session: Session, identity: Identity, manuscript_id: int
) -> None:
    for name, data in demo_pdfs():
        ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename=name, data=data)
    session.commit()

    docs = list_documents(session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id)
    assert [d.filename for d in docs] == [name for name, _ in demo_pdfs()]
    leaching = docs[0]
    assert leaching.title == "Biochar reduces nitrate leaching from sandy soils under repeated summer drought"
    assert leaching.page_count == 2
    assert leaching.sha256 == hashlib.sha256(_demo()).hexdigest()
    assert leaching.size_bytes == len(_demo())

    # The original is stored by sha, byte for byte.
    assert blob_path(leaching.sha256).read_bytes() == _demo()
    assert read_original(session, tenant_id=identity.tenant_id, document_id=leaching.id) == _demo()

    chunks = list_chunks(session, tenant_id=identity.tenant_id, document_id=leaching.id)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.tenant_id == identity.tenant_id
        assert chunk.token_count == count_tokens(chunk.text)
        assert chunk.page_offsets[0] == [0, chunk.page]
        assert chunk.page_offsets[-1][1] == chunk.page_end

    def anchored(sentence: str) -> tuple[Chunk, int]:
        holder = next(c for c in chunks if sentence in c.text)
        return holder, page_at(holder.page_offsets, holder.text.index(sentence))

    assert anchored(PAGE_1_SENTENCE)[1] == 1
    chunk, page = anchored(PAGE_2_SENTENCE)
    assert page == 2
    assert get_chunk(session, tenant_id=identity.tenant_id, chunk_id=chunk.id).text == chunk.text
    # A sentence broken by the page break is whole in one chunk, anchored where it starts; the chunk spans both pages.
    chunk, page = anchored(ACROSS_PAGES_SENTENCE)
    assert page == 1 and chunk.page == 1 and chunk.page_end == 2
    assert page_at(chunk.page_offsets, chunk.text.index("0.57) and increased")) == 2


def test_progress_reports_pages_chunking_and_saving(session: Session, identity: Identity, manuscript_id: int) -> None:
    seen: list[tuple[float, str]] = []
    document = ingest_pdf(
        session,
        tenant_id=identity.tenant_id,
        manuscript_id=manuscript_id,
        filename=LEACHING_PDF,
        data=_demo(),
        progress=lambda fraction, message: seen.append((fraction, message)),
    )
    messages = [message for _, message in seen]
    fractions = [fraction for fraction, _ in seen]
    assert "Reading page 1 of 2" in messages and "Reading page 2 of 2" in messages
    assert "Chunking" in messages
    assert f"Saving {len(document.chunks)} chunks" in messages
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] == 1.0


def test_owner_only_encryption_is_readable(session: Session, identity: Identity, manuscript_id: int) -> None:
    # An empty user password is how "no printing/copying" PDFs are made: every viewer opens them.
    data = pdf_factory.encrypted_pdf(_demo(), user_password="")
    document = ingest_pdf(
        session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="locked.pdf", data=data
    )
    assert any(PAGE_2_SENTENCE in c.text for c in document.chunks)


# --- bad inputs: a named error with a helpful message, and nothing written ----------------------


BAD_INPUTS: list[tuple[str, Any, type[IngestError], tuple[str, ...]]] = [
    ("not a pdf", lambda: b"Dear editor, please find attached...", NotAPdfError, ("not a PDF", "save it as PDF")),
    ("word file", lambda: b"PK\x03\x04\x14\x00\x06\x00rest-of-docx", NotAPdfError, ("Word .docx", "save it as PDF")),
    ("empty bytes", lambda: b"", NotAPdfError, ("is empty (0 bytes)", "Upload it again")),
    ("encrypted", lambda: pdf_factory.encrypted_pdf(_demo()), EncryptedPdfError, ("password-protected", "without")),
    ("corrupt", pdf_factory.corrupt_pdf, CorruptPdfError, ("damaged or incomplete", "upload the new copy")),
    ("truncated", lambda: pdf_factory.truncated_pdf(_demo()), CorruptPdfError, ("damaged or incomplete",)),
    ("scanned", pdf_factory.scanned_pdf, EmptyPdfError, ("looks like a scanned document", "OCR")),
    ("blank", pdf_factory.blank_pdf, EmptyPdfError, ("no extractable text on any of its 2 pages", "OCR")),
]


@pytest.mark.parametrize(("case", "make", "error", "phrases"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_named_error_and_writes_nothing(
    session: Session,
    identity: Identity,
    manuscript_id: int,
    case: str,
    make: Any,
    error: type[IngestError],
    phrases: tuple[str, ...],
) -> None:
    before = _blob_files()
    with pytest.raises(error) as caught:
        ingest_pdf(
            session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="upload.pdf", data=make()
        )
    message = str(caught.value)
    assert "'upload.pdf'" in message, message
    for phrase in phrases:
        assert phrase in message, message
    session.rollback()
    assert _counts(session) == (0, 0)
    assert _blob_files() == before


def test_file_over_the_limit_is_refused_before_parsing(
    session: Session, identity: Identity, manuscript_id: int, one_mb_limit: None
) -> None:
    before = _blob_files()
    too_big = b"%PDF-1.7\n" + b"0" * (1024 * 1024)  # not even a valid PDF: the size check comes first
    with pytest.raises(FileTooLargeError) as caught:
        ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="big.pdf", data=too_big)
    assert "the limit is 1 MB" in str(caught.value) and "WORKBENCH_MAX_UPLOAD_MB" in str(caught.value)
    session.rollback()
    assert _counts(session) == (0, 0)
    assert _blob_files() == before
    with pytest.raises(FileTooLargeError, match=r"limit is 0\.00391 MB"):
        extract_pages(_demo(), max_bytes=4096)


def test_duplicate_upload_is_refused_and_names_the_existing_document(
    session: Session, identity: Identity, manuscript_id: int
) -> None:
    first = ingest_pdf(
        session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="a.pdf", data=_demo()
    )
    session.commit()
    with pytest.raises(DuplicateDocumentError, match="already in this manuscript") as caught:
        ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="b.pdf", data=_demo())
    assert caught.value.document_id == first.id
    session.rollback()
    assert _counts(session)[0] == 1
    # The same file in another manuscript is a new document sharing the stored blob.
    other = create_manuscript(session, tenant_id=identity.tenant_id, title="Other")
    second = ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=other.id, filename="a.pdf", data=_demo())
    assert second.sha256 == first.sha256 and second.id != first.id


# --- a failed database write leaves no blob ------------------------------------------------------


def _colliding_chunks(pages: list[str], *, target_tokens: int) -> list[ChunkDraft]:
    # Two chunks with the same ordinal violate the real UNIQUE (document_id, ordinal) constraint,
    # after the Document row itself was inserted: a failure in the middle of the write.
    drafts = chunk_pages(pages, target_tokens=target_tokens)
    return [*drafts, replace(drafts[0], ordinal=drafts[-1].ordinal)]


def test_database_failure_mid_write_removes_the_blob_it_created(
    session: Session, identity: Identity, manuscript_id: int, fresh_blobs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "chunk_pages", _colliding_chunks)
    with pytest.raises(IntegrityError):
        ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="a.pdf", data=_demo())
    session.rollback()
    assert _counts(session) == (0, 0)
    assert _blob_files() == set()


def test_database_failure_keeps_a_blob_that_was_already_there(
    session: Session, identity: Identity, manuscript_id: int, fresh_blobs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = ingest_pdf(
        session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="a.pdf", data=_demo()
    )
    other = create_manuscript(session, tenant_id=identity.tenant_id, title="Other")
    session.commit()
    monkeypatch.setattr(documents, "chunk_pages", _colliding_chunks)
    with pytest.raises(IntegrityError):
        ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=other.id, filename="a.pdf", data=_demo())
    session.rollback()
    assert _counts(session)[0] == 1
    assert read_blob(kept.sha256) == _demo()  # still referenced by the first document


# --- normalisation -----------------------------------------------------------------------------


def test_hyphenation_and_line_wraps_are_rejoined_from_a_real_pdf() -> None:
    data = pdf_factory.lines_pdf(
        [
            [
                "Methods",
                "The treat-",
                "ment of drought-",
                "tolerant maize reduced nitrate losses by 23% in sandy",
                "soils. Drought-tolerant strains were kept apart.",
                "3",
            ],
            ["4", "Results", "Yield did not change."],
        ]
    )
    pages = extract_pages(data, max_bytes=10**7)
    # "treat-|ment" is hyphenation; "drought-|tolerant" is a compound the document writes elsewhere.
    assert pages[0] == (
        "Methods\nThe treatment of drought-tolerant maize reduced nitrate losses by 23% in sandy soils. "
        "Drought-tolerant strains were kept apart."
    )
    assert pages[1] == "Results\nYield did not change."  # the printed page numbers are gone


@pytest.mark.skipif(not pdf_factory.UNICODE_FONT.exists(), reason="needs DejaVuSans.ttf for ligature glyphs")
def test_ligatures_from_a_real_pdf_become_letters() -> None:
    data = pdf_factory.lines_pdf(
        [["The \ufb01eld was e\ufb03ciently \ufb02ooded after the \ufb01nal harvest."]], font=pdf_factory.UNICODE_FONT
    )
    assert extract_pages(data, max_bytes=10**7) == ["The field was efficiently flooded after the final harvest."]


def test_normalise_pages_cleans_characters_and_spaces_but_keeps_words() -> None:
    raw = "Nitrate\u00a0  fell\tby 23 %\x00 in\u00a0sandy soils\u2010plots.\r\nSoft hyphen: fertil\u00ad\nised plots."
    assert normalise_pages([raw]) == ["Nitrate fell by 23 % in sandy soils-plots. Soft hyphen: fertilised plots."]
    assert normalise_pages(["", "  \n 12 \n"]) == ["", ""]


# --- chunking ----------------------------------------------------------------------------------


def test_chunks_never_split_a_sentence_and_stay_near_the_target() -> None:
    pages = extract_pages(_demo(), max_bytes=10**7)
    drafts = chunk_pages(pages, target_tokens=60)
    assert len(drafts) > 5
    for sentence in (PAGE_1_SENTENCE, PAGE_2_SENTENCE, ACROSS_PAGES_SENTENCE):
        assert any(sentence in d.text for d in drafts), sentence
    for draft in drafts:
        assert draft.text == draft.text.strip()
        assert draft.token_count == count_tokens(draft.text)
        # Only a chunk that is a single long sentence (or heading plus sentence) may exceed the target much.
        if draft.token_count > 60 * 1.2:
            assert draft.text.rstrip(".").count(". ") == 0, draft.text
    # Headings stay with the text they introduce.
    assert not any(d.text.endswith(("Results", "Discussion", "Methods")) for d in drafts[:-1])


def test_token_counts_equal_count_tokens_on_awkward_text() -> None:
    # Chunk counts are summed from sentence counts; prove the sum equals a fresh count, whatever the gaps.
    rng = random.Random(7)
    pieces = [
        "Nitrate fell by 23% (p = 0.004).",
        "It did not change!",
        "Was it drought?",
        '"Quoted," she said.',
        "See Fig. 2 and Okafor et al. (2022).",
        "\u201cCurly\u201d quotes end here.\u201d",
        "Results",
        "2. Methods",
        "Yield: 8.1 t/ha.",
        "(Brackets open the sentence.)",
        "x" * 50 + ".",
        "Ends with a URL http://example.org/a.",
        "\u00c5ngstr\u00f6m and \u03bcg/L values.",
    ]
    gaps = [" ", " ", " ", "\n", "  ", "\n\n", " \n", "\n ", "\t"]
    for _ in range(60):
        text = "".join(rng.choice(pieces) + rng.choice(gaps) for _ in range(rng.randint(1, 40)))
        pages = text.split("\t")  # a tab gap becomes a page break
        for target in (5, 40, 200):
            for draft in chunk_pages(pages, target_tokens=target):
                assert draft.token_count == count_tokens(draft.text), (draft.text, target)


def test_page_at_maps_offsets_to_pages() -> None:
    offsets = [[0, 3], [120, 4], [400, 5]]
    assert [page_at(offsets, o) for o in (0, 119, 120, 399, 400, 10_000)] == [3, 3, 4, 4, 5, 5]
    with pytest.raises(ValueError):
        page_at([], 0)


def test_empty_pages_keep_their_numbers() -> None:
    drafts = chunk_pages(["", "Only page two has text.", "", "And page four."], target_tokens=300)
    assert len(drafts) == 1
    assert drafts[0].page == 2 and drafts[0].page_end == 4
    assert drafts[0].page_offsets == [[0, 2], [len("Only page two has text.") + 1, 4]]


# --- blob storage ------------------------------------------------------------------------------


def test_blob_store_is_content_addressed_idempotent_and_atomic(fresh_blobs: None) -> None:
    sha, path, created = store_blob(b"%PDF-1.7 example")
    assert created and sha == hashlib.sha256(b"%PDF-1.7 example").hexdigest()
    assert path == get_settings().blob_dir / sha[:2] / f"{sha}.pdf"
    assert store_blob(b"%PDF-1.7 example") == (sha, path, False)
    assert read_blob(sha) == b"%PDF-1.7 example"
    assert _blob_files() == {path}  # no temporary files left behind
    assert delete_blob(sha) and not delete_blob(sha)
    with pytest.raises(NotFoundError, match="Upload the PDF again"):
        read_blob(sha)
    with pytest.raises(ValueError):
        blob_path("../../etc/passwd")


# --- tenant isolation --------------------------------------------------------------------------


def test_another_tenant_sees_nothing(session: Session, identity: Identity, manuscript_id: int) -> None:
    document = ingest_pdf(
        session, tenant_id=identity.tenant_id, manuscript_id=manuscript_id, filename="a.pdf", data=_demo()
    )
    chunk_id = document.chunks[0].id
    other = create_tenant(session, slug="rival-lab", name="Rival lab")
    session.commit()

    assert list_documents(session, tenant_id=other.tenant_id, manuscript_id=manuscript_id) == []
    assert list_chunks(session, tenant_id=other.tenant_id, document_id=document.id) == []
    with pytest.raises(NotFoundError):
        get_chunk(session, tenant_id=other.tenant_id, chunk_id=chunk_id)
    with pytest.raises(NotFoundError):
        get_document(session, tenant_id=other.tenant_id, document_id=document.id)
    with pytest.raises(NotFoundError):
        read_original(session, tenant_id=other.tenant_id, document_id=document.id)
    # Nor can it add a document to the first tenant's manuscript.
    with pytest.raises(NotFoundError):
        ingest_pdf(session, tenant_id=other.tenant_id, manuscript_id=manuscript_id, filename="b.pdf", data=_demo())
    session.rollback()
    assert _counts(session)[0] == 1


# -- text a reader cannot see (issue 6) -----------------------------------------------------------


def _ordinary_pdfs() -> list[tuple[str, bytes]]:
    from core.golden_set import load_set
    from tests import hostile_corpus

    lines = [["Results", "Nitrate leaching fell by 34% under biochar.", "Yield rose by 12%."], ["Page two text."]]
    return [
        *demo_pdfs(),
        *((case.filename, case.pdf()) for case in load_set().cases),
        ("lines.pdf", pdf_factory.lines_pdf(lines)),
        ("unicode.pdf", pdf_factory.lines_pdf(lines, font=pdf_factory.UNICODE_FONT)),
        ("hostile-corpus-clean.pdf", hostile_corpus.build()),
    ]


def test_ordinary_scientific_pdfs_have_nothing_hidden_and_keep_their_text() -> None:
    from pypdf import PdfReader

    from core import policy_rules
    from core.pdf import read_page

    for name, data in _ordinary_pdfs():
        pages = PdfReader(io.BytesIO(data)).pages
        assert [read_page(page, n)[1] for n, page in enumerate(pages, start=1)] == [None] * len(pages), name
        texts = extract_pages(data, max_bytes=10**8)
        # Exactly what pypdf extracts without the check, and nothing for the input policy to flag.
        assert texts == normalise_pages([page.extract_text() for page in pages]), name
        assert not any(policy_rules.source_spans(text) for text in texts), name


def test_faint_and_condensed_text_a_reader_can_see_is_kept_and_see_through_text_is_not() -> None:
    from tests.pdf_factory import _new_pdf

    pdf = _new_pdf()
    pdf.add_page()
    pdf.set_font("Times", "", 11)
    with pdf.local_context(fill_opacity=0.4):  # a light watermark-like line is still read
        pdf.cell(0, 6, "Biochar was applied at 20 t/ha.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_stretching(60)  # a condensed line is still read
    pdf.cell(0, 6, "Leaching fell by 34%.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_stretching(100)
    with pdf.local_context(fill_opacity=0):
        pdf.cell(0, 6, "Yields rose by 400%.", new_x="LMARGIN", new_y="NEXT")
    extracted = extract_pdf(bytes(pdf.output()), max_bytes=10**8)
    assert extracted.pages == ["Biochar was applied at 20 t/ha. Leaching fell by 34%."]
    (hidden,) = extracted.hidden
    assert hidden.kinds == {"transparent"} and hidden.sha256 == hashlib.sha256(b"Yields rose by 400%.").hexdigest()


def test_an_ocr_text_layer_over_a_scanned_page_is_kept() -> None:
    from PIL import Image

    from tests.pdf_factory import _new_pdf

    pdf = _new_pdf()
    pdf.add_page()
    pdf.image(Image.new("L", (850, 1100), color=255), x=0, y=0, w=210)
    pdf.set_font("Times", "", 11)
    with pdf.local_context(text_mode=3):  # how ocrmypdf lays recognised text over the page image
        pdf.cell(0, 6, "Nitrate leaching fell by 34% under biochar.", new_x="LMARGIN", new_y="NEXT")
    assert extract_pages(bytes(pdf.output()), max_bytes=10**8) == ["Nitrate leaching fell by 34% under biochar."]


def test_invisible_text_beside_a_small_figure_is_still_left_out() -> None:
    from PIL import Image

    from tests.pdf_factory import _new_pdf

    pdf = _new_pdf()
    pdf.add_page()
    pdf.set_font("Times", "", 11)
    pdf.cell(0, 6, "Figure 1 shows the plots.", new_x="LMARGIN", new_y="NEXT")
    pdf.image(Image.new("L", (100, 100), color=128), x=20, y=40, w=30)
    with pdf.local_context(text_mode=3):
        pdf.cell(0, 6, "Biochar increased yields by 400%.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(255, 255, 255)
    pdf.cell(0, 6, "White words too.", new_x="LMARGIN", new_y="NEXT")
    extracted = extract_pdf(bytes(pdf.output()), max_bytes=10**8)
    assert extracted.pages == ["Figure 1 shows the plots."]
    (hidden,) = extracted.hidden
    assert (hidden.page, hidden.kinds) == (1, {"invisible", "white"})
    assert hidden.sha256 == hashlib.sha256(b"Biochar increased yields by 400%. White words too.").hexdigest()
    assert hidden.chars == len("Biochar increased yields by 400%. White words too.")
