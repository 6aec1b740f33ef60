"""The writing loop's speed on this machine, with the offline ``local`` provider.

    .venv/bin/python bench/pipeline.py        (or: make bench)

Prints:
1. ingestion of the demo PDFs in pages per second beside pypdf's own ``extract_text`` on the
   same files (target: at least 0.8 of raw pypdf), without and with the database write;
2. fact extraction (the Librarian over every chunk) per document;
3. drafting and verifying one paragraph (Writer, Verifier with guard, Rewriter when needed,
   version saved), median and worst of several runs with the answer cache emptied before each
   (target: under 1 s), then the same paragraph again served from the cache.

Runs against a throw-away SQLite database in a temporary directory. Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARAGRAPH_RUNS = 7


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="workbench-bench-")
    os.environ["WORKBENCH_DATA_DIR"] = workdir
    os.environ.pop("DATABASE_URL", None)
    os.environ["WORKBENCH_PROVIDER"] = "local"

    from sqlalchemy import delete

    from bench.ingest import bench_ingest
    from core import db
    from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
    from core.documents import ingest_pdf
    from core.facts import extract_facts
    from core.manuscripts import add_paragraph, create_manuscript
    from core.models import LlmCacheEntry
    from core.pipeline import draft_paragraph
    from core.tenancy import bootstrap

    figures = bench_ingest()
    print(f"demo corpus: {figures['documents']:.0f} PDFs, {figures['pages_per_document']:.1f} pages each")
    print(f"raw pypdf extract_text:        {figures['raw_pypdf_pages_per_s']:8.1f} pages/s")
    print(
        f"ingestion (extract + chunks):  {figures['ingest_pages_per_s']:8.1f} pages/s  "
        f"ratio {figures['ratio']:.2f} (target >= 0.80)"
    )

    engine = db.get_engine()
    db.migrate(engine)
    pdfs = demo_pdfs()
    with db.session_scope(engine) as session:
        identity = bootstrap(session)
        manuscript = create_manuscript(session, tenant_id=identity.tenant_id, title="bench")
        started = time.perf_counter()
        documents = [
            ingest_pdf(session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, filename=name, data=data)
            for name, data in pdfs
        ]
        stored = time.perf_counter() - started
        pages = sum(d.page_count for d in documents)
        print(
            f"ingestion with database write: {pages / stored:8.1f} pages/s  ({pages} pages in {stored * 1000:.0f} ms)"
        )
        started = time.perf_counter()
        facts = sum(
            extract_facts(session, tenant_id=identity.tenant_id, document_id=d.id, trace_id="bench").added
            for d in documents
        )
        extraction = time.perf_counter() - started
        print(
            f"fact extraction (Librarian):   {facts} facts in {extraction * 1000:.0f} ms "
            f"({extraction / len(documents) * 1000:.0f} ms per document)"
        )
        paragraph = add_paragraph(
            session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=DEMO_BRIEFS[0]
        )
        session.commit()

    def draft_once() -> float:
        with db.session_scope(engine) as session:
            started = time.perf_counter()
            draft_paragraph(session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id)
            return time.perf_counter() - started

    timings = []
    sentences = 0
    for _ in range(PARAGRAPH_RUNS):
        with engine.begin() as connection:
            connection.execute(delete(LlmCacheEntry))  # every timed run does every model call
        with db.session_scope(engine) as session:
            started = time.perf_counter()
            version = draft_paragraph(
                session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id
            )
            timings.append(time.perf_counter() - started)
            sentences = len(version.sentences)
            status = version.status
    print(
        f"draft + verify one paragraph:  median {statistics.median(timings) * 1000:.0f} ms, "
        f"worst {max(timings) * 1000:.0f} ms over {PARAGRAPH_RUNS} runs ({sentences} sentences, {status}) "
        f"(target < 1000 ms)"
    )
    cached = [draft_once() for _ in range(PARAGRAPH_RUNS)]
    print(f"the same paragraph again:      median {statistics.median(cached) * 1000:.0f} ms (every call a cache hit)")


if __name__ == "__main__":
    main()
