"""The writing loop end to end on the real database: sources -> facts -> draft -> verify -> repair."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import providers
from core.agents.contracts import LibrarianInput, WriterInput
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import ImmutableRecordError, NoFactsError, NotFoundError, WorkbenchError
from core.facts import list_facts, list_rejections
from core.manuscripts import accept_version, add_paragraph, create_manuscript, list_versions
from core.models import Chunk, Fact, FactRejection, LlmUsageEvent, ParagraphVersion
from core.pipeline import draft_paragraph, reverify, save_edited_version
from core.providers.base import ProviderRequest, ProviderResult
from core.providers.local import LocalProvider
from core.retrieval import search_corpus
from core.settings import reset_settings
from core.sources import add_source
from core.tenancy import Identity, create_tenant


@pytest.fixture
def manuscript(session: Session, identity: Identity) -> int:
    m = create_manuscript(session, tenant_id=identity.tenant_id, title="Drought paper", user_id=identity.user_id)
    for filename, data in demo_pdfs():
        add_source(session, identity=identity, manuscript_id=m.id, filename=filename, data=data, trace_id="t-ingest")
    session.commit()
    return m.id


def test_facts_quote_their_chunk_verbatim_with_page_anchors(
    session: Session, identity: Identity, manuscript: int
) -> None:
    facts = list_facts(session, tenant_id=identity.tenant_id, manuscript_id=manuscript)
    assert len(facts) > 30
    for fact in facts:
        chunk = session.get(Chunk, fact.chunk_id)
        assert chunk is not None
        assert chunk.text[fact.quote_start : fact.quote_start + len(fact.quote)] == fact.quote
        assert chunk.page <= fact.page <= chunk.page_end
    kinds = {f.kind for f in facts}
    assert {"result", "method", "quantity"} <= kinds


def test_search_corpus_ranks_relevant_facts_with_scores(session: Session, identity: Identity, manuscript: int) -> None:
    hits = search_corpus(
        session,
        tenant_id=identity.tenant_id,
        manuscript_id=manuscript,
        query="biochar nitrate leaching sandy soil",
        top_k=5,
    )
    assert 0 < len(hits) <= 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 for h in hits)
    assert "leach" in hits[0].text.lower()
    assert search_corpus(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, query="   ") == []


def test_draft_gives_a_verified_paragraph_citing_existing_facts(
    session: Session, identity: Identity, manuscript: int
) -> None:
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[0])
    version = draft_paragraph(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id, trace_id="trace-1"
    )
    session.commit()
    assert version.status == "verified"
    assert 1 <= len(version.sentences) <= 5
    known = {f.ref for f in list_facts(session, tenant_id=identity.tenant_id, manuscript_id=manuscript)}
    for sentence in version.sentences:
        assert sentence.verdict == "supported" and not sentence.needs_review
        assert sentence.cites and set(sentence.cites) <= known
    events = session.scalars(select(LlmUsageEvent).where(LlmUsageEvent.trace_id == "trace-1")).all()
    agents = {e.agent for e in events}
    assert {"writer", "verifier"} <= agents
    assert all(e.prompt_version == "v1" and len(e.input_hash) == 64 and e.input_tokens > 0 for e in events)


class _CarelessWriter(LocalProvider):
    """A Writer that changes a number in its first sentence, as real models sometimes do."""

    name = "careless"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        result = super().complete(request)
        if isinstance(request.payload, WriterInput):
            first = result.output["sentences"][0]
            first["text"] = re.sub(r"\d+", lambda m: str(int(m.group(0)) * 2 + 1), first["text"], count=1)
            if first["text"] == result.output["sentences"][0]["text"]:
                first["text"] += " It doubled maize yield."
        return result


class _StubbornRewriter(_CarelessWriter):
    """Also a Rewriter that never fixes anything: the sentence must end up marked for review."""

    name = "stubborn"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        result = super().complete(request)
        if request.agent == "rewriter":
            return ProviderResult({"text": "Biochar always doubles yield.", "cites": ["F1"]}, 10, 10, True)
        return result


@pytest.fixture
def provider_named(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def use(cls: type) -> None:
        providers.register(cls.name, cls)
        monkeypatch.setenv("WORKBENCH_PROVIDER", cls.name)
        reset_settings()

    yield use
    reset_settings()


def test_rewriter_repairs_a_failed_sentence_and_it_is_verified_again(
    session: Session, identity: Identity, manuscript: int, provider_named
) -> None:
    provider_named(_CarelessWriter)
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[0])
    version = draft_paragraph(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id
    )
    first = version.sentences[0]
    assert first.rewrite_rounds == 1
    assert first.original_text is not None and first.original_text != first.text
    assert first.verdict == "supported"
    assert version.status == "verified"


def test_a_sentence_that_stays_unsupported_is_marked_for_review_never_verified(
    session: Session, identity: Identity, manuscript: int, provider_named
) -> None:
    provider_named(_StubbornRewriter)
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[0])
    version = draft_paragraph(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id
    )
    failed = [s for s in version.sentences if s.verdict != "supported"]
    assert failed and all(s.needs_review and s.rewrite_rounds == 2 for s in failed)
    assert version.status == "needs_review"
    with pytest.raises(WorkbenchError, match="Only a verified version"):
        accept_version(session, tenant_id=identity.tenant_id, paragraph_id=paragraph.id, version_id=version.id)


def test_edits_make_new_versions_and_history_is_immutable(
    session: Session, identity: Identity, manuscript: int
) -> None:
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[2])
    first = draft_paragraph(session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id)
    session.commit()
    original = [(s.text, list(s.cites), s.verdict) for s in first.sentences]
    edited = [(s.text, list(s.cites)) for s in first.sentences]
    edited[0] = (edited[0][0].replace("sandy", "all"), edited[0][1])
    second = save_edited_version(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id, sentences=edited
    )
    session.commit()
    assert (first.number, second.number) == (1, 2)
    assert second.origin == "edited"
    if edited[0][0] != original[0][0]:
        assert second.status == "needs_review"
    third = reverify(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id, version_id=first.id
    )
    session.commit()
    assert third.origin == "reverified" and third.status == first.status
    versions = list_versions(session, tenant_id=identity.tenant_id, paragraph_id=paragraph.id)
    assert [v.number for v in versions] == [3, 2, 1]
    session.expire_all()
    kept = session.get(ParagraphVersion, first.id)
    assert kept is not None
    assert [(s.text, list(s.cites), s.verdict) for s in kept.sentences] == original
    kept.text = "rewritten history"
    with pytest.raises(ImmutableRecordError):
        session.flush()
    session.rollback()
    accepted = accept_version(session, tenant_id=identity.tenant_id, paragraph_id=paragraph.id, version_id=first.id)
    assert accepted.accepted_version_id == first.id


def test_drafting_without_facts_says_what_to_do(session: Session, identity: Identity) -> None:
    m = create_manuscript(session, tenant_id=identity.tenant_id, title="Empty", user_id=identity.user_id)
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=m.id, brief="anything")
    with pytest.raises(NoFactsError, match="upload a PDF"):
        draft_paragraph(session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id)


class _ParaphrasingLibrarian(LocalProvider):
    """A Librarian that 'improves' every third quote: those facts must be rejected and logged."""

    name = "paraphrasing"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        result = super().complete(request)
        if isinstance(request.payload, LibrarianInput):
            for i, fact in enumerate(result.output["facts"]):
                if i % 3 == 0:
                    fact["quote"] = fact["quote"].replace("reduced", "lowered").replace(" the ", " a ") + " (sic)"
        return result


def test_librarian_quotes_that_are_not_verbatim_are_rejected_and_logged(
    session: Session, identity: Identity, provider_named, caplog: pytest.LogCaptureFixture
) -> None:
    provider_named(_ParaphrasingLibrarian)
    m = create_manuscript(session, tenant_id=identity.tenant_id, title="Quotes", user_id=identity.user_id)
    filename, data = demo_pdfs()[0]
    with caplog.at_level("WARNING"):
        result = add_source(session, identity=identity, manuscript_id=m.id, filename=filename, data=data, trace_id="q")
    assert result.facts_rejected > 0 and result.facts_added > 0
    rejections = list_rejections(session, tenant_id=identity.tenant_id, document_id=result.document.id)
    assert len(rejections) == result.facts_rejected
    assert all("(sic)" in r.quote for r in rejections)
    assert any("not a verbatim span" in r.message for r in caplog.records)
    for fact in list_facts(session, tenant_id=identity.tenant_id, manuscript_id=m.id):
        assert "(sic)" not in fact.quote


def test_a_failing_librarian_leaves_no_document_behind(session: Session, identity: Identity, provider_named) -> None:
    class Broken(LocalProvider):
        name = "broken-librarian"

        def complete(self, request: ProviderRequest) -> ProviderResult:
            if isinstance(request.payload, LibrarianInput) and request.payload.page > 1:
                return ProviderResult({"facts": [{"text": "x"}]}, 1, 1, True)  # breaks the contract
            return super().complete(request)

    provider_named(Broken)
    m = create_manuscript(session, tenant_id=identity.tenant_id, title="Broken", user_id=identity.user_id)
    session.commit()
    filename, data = demo_pdfs()[0]
    from core import db
    from core.errors import ContractError
    from core.storage import blob_path

    with pytest.raises(ContractError), db.session_scope(session.get_bind()) as other:  # type: ignore[arg-type]
        add_source(other, identity=identity, manuscript_id=m.id, filename=filename, data=data, trace_id="b")
    assert session.scalar(select(func.count(Chunk.id))) == 0
    assert session.scalar(select(func.count(Fact.id))) == 0
    assert session.scalar(select(func.count(FactRejection.id))) == 0
    import hashlib

    assert not blob_path(hashlib.sha256(data).hexdigest()).exists()


def test_another_tenant_sees_nothing(session: Session, identity: Identity, manuscript: int) -> None:
    other = create_tenant(session, slug="other-lab", name="Other lab")
    assert list_facts(session, tenant_id=other.tenant_id, manuscript_id=manuscript) == []
    assert search_corpus(session, tenant_id=other.tenant_id, manuscript_id=manuscript, query="biochar") == []
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief="biochar")
    with pytest.raises(NotFoundError):
        draft_paragraph(session, tenant_id=other.tenant_id, user_id=other.user_id, paragraph_id=paragraph.id)
    with pytest.raises(NotFoundError):
        add_paragraph(session, tenant_id=other.tenant_id, manuscript_id=manuscript, brief="steal")
