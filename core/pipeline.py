"""The paragraph loop: Writer -> Verifier (+ guard) -> Rewriter (bounded) -> immutable version.

A version is ``verified`` only when every one of its sentences is supported; a sentence that
still fails after the last Rewriter round is kept, marked for review, and never shown as
verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import breakers, gateway, routing, tracing
from core.agents import verifier
from core.agents.contracts import (
    CitedFact,
    DraftSentence,
    RewriterInput,
    RewriterOutput,
    VerifierOutput,
    WriterInput,
    WriterOutput,
)
from core.agents.guard import FactText
from core.errors import NoFactsError, NotFoundError, WorkbenchError
from core.facts import get_facts_by_ref
from core.manuscripts import get_paragraph
from core.models import Fact, ParagraphVersion, SentenceCheck
from core.progress import ProgressFn, no_progress, scaled
from core.retrieval import corpus_fingerprint, search_corpus_tool
from core.settings import get_settings
from core.tenancy import is_golden_tenant


@dataclass
class _Sentence:
    text: str
    cites: list[str]
    verdict: VerifierOutput
    rounds: int = 0
    original: str | None = None


def new_trace_id() -> str:
    return uuid.uuid4().hex


def draft_paragraph(
    session: Session,
    *,
    tenant_id: int,
    user_id: int | None,
    paragraph_id: int,
    trace_id: str | None = None,
    progress: ProgressFn = no_progress,
    job_id: str | None = None,
    prompt_pins: Mapping[str, str] | None = None,
    model_pins: Mapping[str, str] | None = None,
) -> ParagraphVersion:
    """Draft, verify and repair one paragraph from its brief; saves and returns a new version.

    ``prompt_pins`` and ``model_pins`` (agent -> version or model) win over what would serve
    otherwise; golden runs and replays name them."""
    trace_id = trace_id or new_trace_id()
    draft = write_draft(
        session,
        tenant_id=tenant_id,
        paragraph_id=paragraph_id,
        trace_id=trace_id,
        progress=scaled(progress, 0.0, 0.2),
        job_id=job_id,
        prompt_pins=prompt_pins,
        model_pins=model_pins,
    )
    return finish_draft(
        session,
        tenant_id=tenant_id,
        user_id=user_id,
        paragraph_id=paragraph_id,
        draft=draft,
        trace_id=trace_id,
        progress=scaled(progress, 0.2, 1.0),
        job_id=job_id,
        prompt_pins=prompt_pins,
        model_pins=model_pins,
    )


@dataclass(frozen=True)
class Draft:
    """The Writer's sentences and the facts its searches found: what the verification step needs.

    JSON-able (``as_dict``/``from_dict``), so a draft can travel from the generation queue to the
    verification queue inside a job's payload.
    """

    sentences: list[tuple[str, list[str]]]
    retrieved: list[str]
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """The prompt versions the Writer's calls used: the saved version records them beside the others."""

    def as_dict(self) -> dict[str, object]:
        return {
            "sentences": [[text, cites] for text, cites in self.sentences],
            "retrieved": self.retrieved,
            "prompt_versions": self.prompt_versions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Draft:
        return cls(
            [(str(text), [str(c) for c in cites]) for text, cites in data["sentences"]],
            list(data["retrieved"]),
            {str(k): str(v) for k, v in data.get("prompt_versions", {}).items()},  # absent in older queued jobs
        )


def write_draft(
    session: Session,
    *,
    tenant_id: int,
    paragraph_id: int,
    trace_id: str,
    progress: ProgressFn = no_progress,
    job_id: str | None = None,
    prompt_pins: Mapping[str, str] | None = None,
    model_pins: Mapping[str, str] | None = None,
) -> Draft:
    """The Writer's part: find facts with ``search_corpus`` and draft sentences citing them. Writes nothing."""
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    ctx = _context(session, tenant_id, paragraph_id, trace_id, job_id)
    _pin(ctx, prompt_pins, model_pins)
    ctx.drafting = True
    # The trajectory starts here and stays running until finish_draft (the next job) ends it.
    with (
        tracing.run(ctx, "paragraph", paragraph_id=paragraph_id, manuscript_id=paragraph.manuscript_id) as run,
        run.stage("write_draft"),
    ):
        has_facts = session.scalar(
            select(func.count(Fact.id)).where(
                Fact.tenant_id == tenant_id, Fact.manuscript_id == paragraph.manuscript_id
            )
        )
        if not has_facts:
            raise NoFactsError("This manuscript has no facts yet: upload a PDF and let the Librarian read it first.")
        # Before the Writer has searched, the facts the brief finds stand in for the ones it will use.
        ctx.complexity = routing.judge_paragraph(
            session, tenant_id=tenant_id, manuscript_id=paragraph.manuscript_id, brief=paragraph.brief
        )
        corpus = corpus_fingerprint(session, tenant_id=tenant_id, manuscript_id=paragraph.manuscript_id)
        tool = search_corpus_tool(session, tenant_id=tenant_id, manuscript_id=paragraph.manuscript_id)

        progress(0.1, "Writer: finding facts and drafting")
        draft = gateway.run_agent(
            "writer",
            WriterInput(brief=paragraph.brief, facts=[], max_sentences=5, corpus=corpus),
            WriterOutput,
            ctx=ctx,
            render={"brief": paragraph.brief, "max_sentences": 5},
            tools={tool.name: tool},
        )
        if not draft.sentences:
            raise NoFactsError(
                "No fact of this manuscript matches the brief. Name the topic in the words of your sources, or "
                "upload the PDF that covers it."
            )
        retrieved = [str(r["id"]) for call in ctx.tool_calls if call.name == "search_corpus" for r in call.result]
        progress(1.0, f"Writer: {len(draft.sentences)} sentences drafted")
    return Draft([(s.text, list(s.cites)) for s in draft.sentences], retrieved, dict(ctx.prompt_versions))


def finish_draft(
    session: Session,
    *,
    tenant_id: int,
    user_id: int | None,
    paragraph_id: int,
    draft: Draft,
    trace_id: str,
    progress: ProgressFn = no_progress,
    job_id: str | None = None,
    prompt_pins: Mapping[str, str] | None = None,
    model_pins: Mapping[str, str] | None = None,
) -> ParagraphVersion:
    """The Verifier's and Rewriter's part: check every sentence, repair what failed, save the version."""
    settings = get_settings()
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    ctx = _context(session, tenant_id, paragraph_id, trace_id, job_id)
    _pin(ctx, prompt_pins, model_pins)
    ctx.prompt_versions.update(draft.prompt_versions)  # the Writer ran in the job before this one
    ctx.drafting = True
    with tracing.run(ctx, "paragraph", paragraph_id=paragraph_id, manuscript_id=paragraph.manuscript_id) as run:
        ctx.complexity = routing.judge_paragraph(
            session,
            tenant_id=tenant_id,
            manuscript_id=paragraph.manuscript_id,
            brief=paragraph.brief,
            refs=[*draft.retrieved, *(c for _, cites in draft.sentences for c in cites)],
        )
        written = WriterOutput(sentences=[DraftSentence(text=text, cites=cites) for text, cites in draft.sentences])
        with run.stage("verify", sentences=len(written.sentences)):
            sentences = _verify_all(session, ctx, paragraph.manuscript_id, written, progress)
        failed = sum(s.verdict.verdict != "supported" for s in sentences)
        if failed:
            with run.stage("repair", sentences=failed, rounds=settings.rewrite_rounds):
                sentences = _repair(
                    session, ctx, paragraph.manuscript_id, sentences, draft.retrieved, settings.rewrite_rounds, progress
                )
        progress(0.95, "Saving the new version")
        with run.stage("save"):
            version = _save_version(session, ctx, paragraph_id, user_id, sentences, origin="drafted")
        run.done(version_id=version.id)
    return version


def save_edited_version(
    session: Session,
    *,
    tenant_id: int,
    user_id: int | None,
    paragraph_id: int,
    sentences: list[tuple[str, list[str]]],
    trace_id: str | None = None,
) -> ParagraphVersion:
    """The researcher's own wording, verified as it stands (never rewritten behind their back)."""
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    kept = [(text.strip(), [c.strip().upper() for c in cites if c.strip()]) for text, cites in sentences]
    kept = [(text, cites) for text, cites in kept if text]
    if not kept:
        raise WorkbenchError("The edited paragraph has no sentences; write at least one.")
    ctx = _context(session, tenant_id, paragraph_id, trace_id, None)
    with tracing.run(ctx, "edit", paragraph_id=paragraph_id, manuscript_id=paragraph.manuscript_id) as run:
        ctx.complexity = routing.judge_paragraph(
            session,
            tenant_id=tenant_id,
            manuscript_id=paragraph.manuscript_id,
            brief=paragraph.brief,
            refs=[c for _, cites in kept for c in cites],
        )
        with run.stage("verify", sentences=len(kept)):
            checked = [
                _Sentence(text, cites, _verify_one(session, ctx, paragraph.manuscript_id, text, cites))
                for text, cites in kept
            ]
        with run.stage("save"):
            version = _save_version(session, ctx, paragraph_id, user_id, checked, origin="edited")
        run.done(version_id=version.id)
    return version


def reverify(
    session: Session,
    *,
    tenant_id: int,
    user_id: int | None,
    paragraph_id: int,
    version_id: int,
    trace_id: str | None = None,
) -> ParagraphVersion:
    """Check an existing version again (against the facts as they are now) as a new version."""
    paragraph = get_paragraph(session, tenant_id=tenant_id, paragraph_id=paragraph_id)
    version = session.scalar(
        select(ParagraphVersion).where(
            ParagraphVersion.tenant_id == tenant_id,
            ParagraphVersion.paragraph_id == paragraph.id,
            ParagraphVersion.id == version_id,
        )
    )
    if version is None:
        raise NotFoundError(f"Version {version_id} does not belong to paragraph {paragraph_id}.")
    ctx = _context(session, tenant_id, paragraph.id, trace_id, None)
    with tracing.run(ctx, "reverify", paragraph_id=paragraph.id, manuscript_id=paragraph.manuscript_id) as run:
        ctx.complexity = routing.judge_paragraph(
            session,
            tenant_id=tenant_id,
            manuscript_id=paragraph.manuscript_id,
            brief=paragraph.brief,
            refs=[c for s in version.sentences for c in s.cites],
        )
        with run.stage("verify", sentences=len(version.sentences), of_version=version.id):
            checked = [
                _Sentence(
                    s.text, list(s.cites), _verify_one(session, ctx, paragraph.manuscript_id, s.text, list(s.cites))
                )
                for s in version.sentences
            ]
        with run.stage("save"):
            saved = _save_version(session, ctx, paragraph.id, user_id, checked, origin="reverified")
        run.done(version_id=saved.id)
    return saved


# -- steps ----------------------------------------------------------------------------------------


def _context(
    session: Session, tenant_id: int, paragraph_id: int, trace_id: str | None, job_id: str | None
) -> gateway.CallContext:
    """One run's context, with the paragraph's token budget opened (shared by all its calls)."""
    trace_id = trace_id or new_trace_id()
    ctx = gateway.CallContext(
        session=session, tenant_id=tenant_id, trace_id=trace_id, paragraph_id=paragraph_id, job_id=job_id
    )
    gateway.open_paragraph_budget(ctx, settings=get_settings())
    return ctx


def _pin(ctx: gateway.CallContext, prompt_pins: Mapping[str, str] | None, model_pins: Mapping[str, str] | None) -> None:
    """The caller's pins over whatever the context chose (a golden run or a replay names them)."""
    ctx.prompt_pins.update(prompt_pins or {})
    ctx.model_pins.update(model_pins or {})


def _verify_one(
    session: Session, ctx: gateway.CallContext, manuscript_id: int, text: str, cites: list[str]
) -> VerifierOutput:
    known = get_facts_by_ref(session, tenant_id=ctx.tenant_id, manuscript_id=manuscript_id, refs=cites)
    facts = [FactText(ref, fact.text) for ref, fact in known.items()]
    return verifier.judge(ctx, text, cites, facts)


def _verify_all(
    session: Session, ctx: gateway.CallContext, manuscript_id: int, draft: WriterOutput, progress: ProgressFn
) -> list[_Sentence]:
    out = []
    for number, sentence in enumerate(draft.sentences, start=1):
        progress(0.2 + 0.4 * number / len(draft.sentences), f"Verifier: sentence {number} of {len(draft.sentences)}")
        verdict = _verify_one(session, ctx, manuscript_id, sentence.text, sentence.cites)
        out.append(_Sentence(sentence.text, list(sentence.cites), verdict))
    return out


def _repair(
    session: Session,
    ctx: gateway.CallContext,
    manuscript_id: int,
    sentences: list[_Sentence],
    retrieved: list[str],
    rounds: int,
    progress: ProgressFn,
) -> list[_Sentence]:
    for sentence in sentences:
        while sentence.verdict.verdict != "supported" and sentence.rounds < rounds:
            progress(0.7, f"Rewriter: repairing a sentence (round {sentence.rounds + 1} of {rounds})")
            refs = list(dict.fromkeys([*sentence.cites, *retrieved]))
            known = get_facts_by_ref(session, tenant_id=ctx.tenant_id, manuscript_id=manuscript_id, refs=refs)
            if not known:
                break
            candidates = [CitedFact(id=ref, text=fact.text) for ref, fact in known.items()]
            repaired = gateway.run_agent(
                "rewriter",
                RewriterInput(
                    sentence=sentence.text,
                    cites=sentence.cites,
                    facts=candidates,
                    failure_mode=sentence.verdict.failure_mode,
                    reason=sentence.verdict.reason,
                ),
                RewriterOutput,
                ctx=ctx,
                render={
                    "sentence": sentence.text,
                    "failure_mode": sentence.verdict.failure_mode or "",
                    "reason": sentence.verdict.reason,
                    "facts": "\n".join(f"{c.id}: {c.text}" for c in candidates),
                },
            )
            sentence.original = sentence.original or sentence.text
            sentence.text, sentence.cites = repaired.text, list(repaired.cites)
            sentence.rounds += 1
            sentence.verdict = _verify_one(session, ctx, manuscript_id, sentence.text, sentence.cites)
    return sentences


def _save_version(
    session: Session,
    ctx: gateway.CallContext,
    paragraph_id: int,
    user_id: int | None,
    sentences: list[_Sentence],
    *,
    origin: str,
) -> ParagraphVersion:
    number = (
        session.scalar(
            select(func.coalesce(func.max(ParagraphVersion.number), 0)).where(
                ParagraphVersion.tenant_id == ctx.tenant_id, ParagraphVersion.paragraph_id == paragraph_id
            )
        )
        or 0
    ) + 1
    verified = bool(sentences) and all(s.verdict.verdict == "supported" for s in sentences)
    cost, _unpriced = gateway.trace_cost(ctx)
    with ctx.ledger() as connection:
        # A golden run of a weak candidate must not pause generation for everyone.
        if not is_golden_tenant(connection, tenant_id=ctx.tenant_id):
            breakers.record_paragraph(
                connection,
                trace_id=ctx.trace_id,
                sentences=len(sentences),
                # Only drafted text says whether the models are healthy; a researcher's own edits do not.
                unsupported=sum(s.verdict.verdict != "supported" for s in sentences) if origin == "drafted" else 0,
                cost_usd=cost,
                settings=get_settings(),
            )
    version = ParagraphVersion(
        tenant_id=ctx.tenant_id,
        paragraph_id=paragraph_id,
        number=number,
        text=" ".join(s.text for s in sentences),
        status="verified" if verified else "needs_review",
        origin=origin,
        trace_id=ctx.trace_id,
        prompt_versions=dict(ctx.prompt_versions),
        provider=get_settings().provider,
        created_by=user_id,
    )
    session.add(version)
    session.flush()
    for ordinal, s in enumerate(sentences, start=1):
        session.add(
            SentenceCheck(
                tenant_id=ctx.tenant_id,
                version_id=version.id,
                ordinal=ordinal,
                text=s.text,
                cites=s.cites,
                verdict=s.verdict.verdict,
                failure_mode=s.verdict.failure_mode,
                reason=s.verdict.reason,
                rewrite_rounds=s.rounds,
                needs_review=s.verdict.verdict != "supported",
                original_text=s.original,
            )
        )
    session.flush()
    session.refresh(version)
    return version
