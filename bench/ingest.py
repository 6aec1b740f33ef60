"""Ingestion speed: raw pypdf ``extract_text`` against our ``extract_pages`` + ``chunk_pages``.

Both sides parse the same PDFs from bytes; ours also validates, normalises the text, splits
sentences, counts tokens and packs chunks (everything of ingestion except the database and the
blob write). The target is a ratio of at least 0.8. Prints figures; asserts nothing.

    .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pypdf import PdfReader

from core.chunking import chunk_pages
from core.demo_corpus import demo_pdfs
from core.pdf import extract_pages
from core.settings import get_settings
from core.tokens import encoding

MIN_SECONDS = 1.0
"""Each side runs whole rounds over the corpus until at least this long has passed."""

ROUNDS = 3
"""Measurements per side, alternating; the best of each is kept (the least disturbed by other processes)."""


def _raw(pdfs: list[bytes]) -> int:
    pages = 0
    for data in pdfs:
        reader = PdfReader(io.BytesIO(data))
        for index in range(len(reader.pages)):
            reader.pages[index].extract_text()
            pages += 1
    return pages


def _ours(pdfs: list[bytes], target_tokens: int) -> int:
    pages = 0
    for data in pdfs:
        texts = extract_pages(data, max_bytes=len(data))
        chunk_pages(texts, target_tokens=target_tokens)
        pages += len(texts)
    return pages


def _pages_per_second(run: Callable[[], int]) -> float:
    pages = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < MIN_SECONDS:
        pages += run()
    return pages / elapsed


def bench_ingest() -> dict[str, float]:
    """Pages per second of raw pypdf and of our ingestion (minus the database), and their ratio."""
    pdfs = [data for _name, data in demo_pdfs()]
    target = get_settings().chunk_tokens
    encoding().encode_ordinary("warm up")  # load the vocabulary outside the timing
    _raw(pdfs), _ours(pdfs, target)  # warm pypdf's and fontTools' caches on both sides alike
    raw = ours = 0.0
    for _ in range(ROUNDS):
        # Rounds alternate between the two sides so a busy neighbour slows both alike; the best round counts.
        raw = max(raw, _pages_per_second(lambda: _raw(pdfs)))
        ours = max(ours, _pages_per_second(lambda: _ours(pdfs, target)))
    pages = sum(len(PdfReader(io.BytesIO(data)).pages) for data in pdfs)
    return {
        "documents": float(len(pdfs)),
        "pages_per_document": pages / len(pdfs),
        "raw_pypdf_pages_per_s": raw,
        "ingest_pages_per_s": ours,
        "ratio": ours / raw,
    }


def main() -> None:
    figures = bench_ingest()
    print(f"corpus: {figures['documents']:.0f} demo PDFs, {figures['pages_per_document']:.1f} pages each")
    print(f"raw pypdf extract_text     : {figures['raw_pypdf_pages_per_s']:8.1f} pages/s")
    print(f"extract_pages + chunk_pages: {figures['ingest_pages_per_s']:8.1f} pages/s")
    print(f"ratio                      : {figures['ratio']:8.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
