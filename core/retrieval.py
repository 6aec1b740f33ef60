"""``search_corpus(query, top_k)``: BM25 over a manuscript's facts, with scores.

Facts are indexed by the same stems the Verifier reads (plus numbers and names), so a brief
that asks about "leaching" finds facts that say "leached".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import bm25s
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.claims import analyse
from core.models import Document, Fact
from core.providers.base import ToolSpec

DEFAULT_TOP_K = 8
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


@dataclass(frozen=True)
class ScoredFact:
    id: int
    ref: str
    text: str
    quote: str
    page: int
    document_id: int
    document: str
    score: float

    def as_tool_result(self) -> dict[str, object]:
        return {
            "id": self.ref,
            "text": self.text,
            "score": round(self.score, 4),
            "source": self.document,
            "page": self.page,
        }


def index_terms(text: str) -> list[str]:
    claim = analyse(text)
    terms = [t.stem for t in claim.tokens if t.stem in claim.content]
    terms += [f"#{q.value:g}" for q in claim.quantities]
    return terms or ["<empty>"]


@dataclass(frozen=True)
class _Index:
    fact_ids: tuple[int, ...]
    retriever: bm25s.BM25


@lru_cache(maxsize=32)
def _index(tenant_id: int, manuscript_id: int, version: tuple[int, int], texts: tuple[tuple[int, str], ...]) -> _Index:
    # Facts are single sentences whose length says little about relevance; soften BM25's length penalty.
    retriever = bm25s.BM25(k1=1.2, b=0.3)
    retriever.index([index_terms(text) for _, text in texts], show_progress=False)
    return _Index(tuple(fact_id for fact_id, _ in texts), retriever)


def search_corpus(
    session: Session, *, tenant_id: int, manuscript_id: int, query: str, top_k: int = DEFAULT_TOP_K
) -> list[ScoredFact]:
    """The ``top_k`` facts of the manuscript that best match ``query``, best first, score > 0 only."""
    top_k = max(1, min(int(top_k), 50))
    count, newest = session.execute(
        select(func.count(Fact.id), func.coalesce(func.max(Fact.id), 0)).where(
            Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id
        )
    ).one()
    if not count or not query.strip():
        return []
    rows = session.execute(
        select(Fact.id, Fact.text)
        .where(Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id)
        .order_by(Fact.id)
    ).all()
    index = _index(tenant_id, manuscript_id, (count, newest), tuple((r.id, r.text) for r in rows))
    k = min(top_k, len(index.fact_ids))
    positions, scores = index.retriever.retrieve([index_terms(query)], k=k, show_progress=False)
    ranked = [
        (index.fact_ids[int(p)], float(s)) for p, s in zip(np.ravel(positions), np.ravel(scores), strict=True) if s > 0
    ]
    if not ranked:
        return []
    facts = {
        f.id: (f, name)
        for f, name in session.execute(
            select(Fact, Document.filename)
            .join(Document, Document.id == Fact.document_id)
            .where(Fact.tenant_id == tenant_id, Fact.id.in_([fid for fid, _ in ranked]))
        ).all()
    }
    return [
        ScoredFact(
            id=fid,
            ref=facts[fid][0].ref,
            text=facts[fid][0].text,
            quote=facts[fid][0].quote,
            page=facts[fid][0].page,
            document_id=facts[fid][0].document_id,
            document=facts[fid][1],
            score=score,
        )
        for fid, score in ranked
        if fid in facts
    ]


def corpus_fingerprint(session: Session, *, tenant_id: int, manuscript_id: int) -> str:
    """Changes whenever the manuscript's facts do; part of the Writer's input, so a cached draft
    is never served after a source was added or removed."""
    count, newest, total = session.execute(
        select(func.count(Fact.id), func.coalesce(func.max(Fact.id), 0), func.coalesce(func.sum(Fact.id), 0)).where(
            Fact.tenant_id == tenant_id, Fact.manuscript_id == manuscript_id
        )
    ).one()
    return f"{count}:{newest}:{total}"


SEARCH_CORPUS_PARAMETERS: dict[str, object] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "what to look for, in the words of the sources"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": DEFAULT_TOP_K},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def search_corpus_tool(session: Session, *, tenant_id: int, manuscript_id: int) -> ToolSpec:
    """``search_corpus`` as a tool the Writer may call, bound to one manuscript of one tenant."""

    def search(query: str, top_k: int = DEFAULT_TOP_K) -> list[dict[str, object]]:
        hits = search_corpus(session, tenant_id=tenant_id, manuscript_id=manuscript_id, query=query, top_k=top_k)
        return [h.as_tool_result() for h in hits]

    def record(result: list[dict[str, object]]) -> list[dict[str, object]]:
        # The call log keeps which facts came back and how they scored; their text stays in `facts`.
        return [{"id": r["id"], "score": r["score"], "source": r["source"], "page": r["page"]} for r in result]

    return ToolSpec(
        name="search_corpus",
        description="Search the manuscript's facts (each quoted verbatim from an uploaded PDF); best matches first.",
        parameters=SEARCH_CORPUS_PARAMETERS,
        fn=search,
        record=record,
    )
