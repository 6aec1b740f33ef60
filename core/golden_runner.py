"""A golden run: the whole golden set through the real pipeline, stored as a ``GoldenRun``.

Each case is run in the golden tenant (slug ``golden``) in a manuscript of its own run: the
case's paper is rendered as a PDF and ingested (Librarian), the brief is drafted
(``pipeline.draft_paragraph``: Writer, Verifier with its guard, Rewriter), and the case's
sentences are put to the Verifier as they stand. Prompt and model pins apply to every call.
The golden tenant's answer cache is emptied first, so each run calls the models itself: its
tokens, cost and latency are its own, and two runs never share an answer.

A run passes when every expectation of every case holds and no sentence is a false support
(``core.golden_checks``). Its record names the prompt versions used and the sha256 of each
version's file (what the release gate matches on), the models actually called, and the hash of
the golden files.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from core import db, deployments, gateway, model_registry, prompts
from core.agents import verifier
from core.agents.guard import FactText
from core.complexity import SourceFact, paragraph_complexity
from core.errors import GoldenSetError, NotFoundError, WorkbenchError
from core.facts import list_facts
from core.golden_checks import Judged, KnownFact, Outcome, judge_paragraph, judge_sentence, quoting
from core.golden_set import GOLDEN_DIR, GoldenCase, load_set
from core.manuscripts import add_paragraph, create_manuscript
from core.models import GoldenCaseResult, GoldenRun, LlmCacheEntry, LlmUsageEvent, Tenant, User, utcnow
from core.pipeline import draft_paragraph
from core.providers import get_provider
from core.settings import get_settings
from core.sources import add_source
from core.tenancy import GOLDEN_TENANT_SLUG, Identity, create_tenant

log = logging.getLogger(__name__)
GOLDEN_TENANT_NAME = "Golden set (release gate)"
Progress = Callable[[int, int, str], None]
"""Told before each case: its number (from 1), the number of cases and the case id."""


@dataclass(frozen=True)
class Pins:
    prompts: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)


def golden_identity(session: Session) -> Identity:
    """The golden tenant and its researcher, created on first use."""
    tenant = session.scalar(select(Tenant).where(Tenant.slug == GOLDEN_TENANT_SLUG))
    if tenant is None:
        return create_tenant(session, slug=GOLDEN_TENANT_SLUG, name=GOLDEN_TENANT_NAME)
    user_id = session.scalar(select(User.id).where(User.tenant_id == tenant.id).order_by(User.id))
    if user_id is None:
        raise GoldenSetError(f"The golden tenant (id {tenant.id}) has no user to own its manuscripts.")
    return Identity(tenant_id=tenant.id, user_id=user_id)


def check_pins(session: Session, pins: Pins) -> dict[str, str]:
    """Refuse unknown agents, prompt versions that do not load and models the registry refuses,
    before anything runs; returns the sha256 of each pinned version's file."""
    settings = get_settings()
    hashes = {}
    for kind, pinned in (("--prompt", pins.prompts), ("--model", pins.models)):
        unknown = sorted(set(pinned) - set(prompts.AGENTS))
        if unknown:
            raise GoldenSetError(
                f"{kind} names unknown agent {', '.join(unknown)}; agents are {', '.join(prompts.AGENTS)}."
            )
    for agent, version in pins.prompts.items():
        hashes[agent] = prompts.load(agent, version, settings.prompts_dir).sha256
    registry = model_registry.snapshot(session)
    provider = get_provider(settings.provider).name
    for agent, model in pins.models.items():
        refusal = registry.refusal(model)
        if refusal is not None:
            raise GoldenSetError(f"Golden run refused: --model {agent}={model}: {refusal}")
        elsewhere = registry.other_provider(model, provider)
        if elsewhere is not None:
            raise GoldenSetError(
                f"Golden run refused: --model {agent}={model}: {elsewhere}; pin a {provider} model "
                f"(`python -m core models list`)."
            )
    return hashes


def run_golden(
    engine: Engine,
    *,
    prompt_pins: Mapping[str, str] | None = None,
    model_pins: Mapping[str, str] | None = None,
    label: str = "",
    triggered_by: str = "",
    golden_dir: Path = GOLDEN_DIR,
    progress: Progress | None = None,
) -> GoldenRun:
    """Run every case of the golden set; returns the stored run (its ``status`` is passed or failed).

    Raises ``GoldenSetError`` (nothing stored) when the set does not load or a pin is refused."""
    pins = Pins(dict(prompt_pins or {}), dict(model_pins or {}))
    golden = load_set(golden_dir)
    started = time.perf_counter()
    with db.session_scope(engine) as session:
        # Agents the caller leaves unpinned run under their active version, never a canary's: a
        # golden run measures exactly the versions it names.
        pins = Pins({**deployments.active_versions(session), **pins.prompts}, pins.models)
        pinned_hashes = check_pins(session, pins)
        identity = golden_identity(session)
        session.execute(delete(LlmCacheEntry).where(LlmCacheEntry.tenant_id == identity.tenant_id))
        run = GoldenRun(
            status="running",
            set_sha256=golden.sha256,
            provider=get_settings().provider,
            prompt_versions=dict(pins.prompts),
            prompt_hashes=pinned_hashes,
            models=dict(pins.models),
            label=label[:200],
            triggered_by=triggered_by[:320],
            cases_total=len(golden.cases),
            expectations_total=sum(c.expectation_count for c in golden.cases),
        )
        session.add(run)
        session.commit()
        try:
            results, traces = [], []
            for number, case in enumerate(golden.cases, start=1):
                if progress is not None:
                    progress(number, len(golden.cases), case.id)
                result, case_traces = _run_case(session, identity, run, case, pins)
                results.append(result)
                traces += case_traces
                session.commit()
            _finish(session, run, identity, results, traces, started)
        except BaseException as error:
            session.rollback()
            run.status, run.error, run.finished_at = "error", f"{type(error).__name__}: {error}", utcnow()
            session.add(run)
            session.commit()
            raise
    return run


def _run_case(
    session: Session, identity: Identity, run: GoldenRun, case: GoldenCase, pins: Pins
) -> tuple[GoldenCaseResult, list[str]]:
    """The case's stored result and the traces of its calls (ingest, draft, sentence checks)."""
    started = time.perf_counter()
    outcome = Outcome()
    traces = [uuid.uuid4().hex for _ in range(3)]
    ingest_trace, draft_trace, check_trace = traces
    sentences: list[Judged] = []
    verified = False
    try:
        manuscript = create_manuscript(
            session, tenant_id=identity.tenant_id, title=f"Golden run {run.id}: {case.id}", user_id=identity.user_id
        )
        session.commit()  # every model call runs outside a write transaction
        add_source(
            session,
            identity=identity,
            manuscript_id=manuscript.id,
            filename=case.filename,
            data=case.pdf(),
            trace_id=ingest_trace,
            prompt_pins=pins.prompts,
            model_pins=pins.models,
        )
        session.commit()
        paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=case.brief)
        session.commit()
        version = draft_paragraph(
            session,
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            paragraph_id=paragraph.id,
            trace_id=draft_trace,
            prompt_pins=pins.prompts,
            model_pins=pins.models,
        )
        session.commit()
        verified = version.status == "verified"
        sentences = [
            Judged(s.text, list(s.cites), s.verdict, s.failure_mode, s.reason)
            for s in sorted(version.sentences, key=lambda s: s.ordinal)
        ]
        facts = list_facts(session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id)
        known = [KnownFact(f.ref, f.quote) for f in facts]
        judge_paragraph(case, outcome, facts=known, verified=verified, sentences=sentences)
        _check_sentences(
            session, identity, case, outcome, known, [FactText(f.ref, f.text) for f in facts], check_trace, pins
        )
    except WorkbenchError as error:  # the case fails with the reason; the run goes on with the next case
        session.rollback()
        log.warning("golden case %s failed to run: %s", case.id, error)
        outcome.add("error", case.id, False, f"{type(error).__name__}: {error}")
    usage = _usage(session, identity.tenant_id, traces)
    supported = sum(s.verdict == "supported" for s in sentences)
    result = GoldenCaseResult(
        run_id=run.id,
        case_id=case.id,
        passed=outcome.passed,
        verified=verified,
        paragraph_text=" ".join(s.text for s in sentences),
        sentences=[s.as_dict() for s in sentences],
        expectations=outcome.expectations,
        false_supports=outcome.false_supports,
        sentence_support_rate=supported / len(sentences) if sentences else None,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        latency_ms=(time.perf_counter() - started) * 1000,
        trace_id=draft_trace,
    )
    session.add(result)
    return result, traces


def _check_sentences(
    session: Session,
    identity: Identity,
    case: GoldenCase,
    outcome: Outcome,
    known: list[KnownFact],
    facts: list[FactText],
    trace_id: str,
    pins: Pins,
) -> None:
    if not case.sentences:
        return
    ctx = gateway.CallContext(
        session=session,
        tenant_id=identity.tenant_id,
        trace_id=trace_id,
        prompt_pins=dict(pins.prompts),
        model_pins=dict(pins.models),
    )
    text_of = {f.id: f.text for f in facts}
    for check in case.sentences:
        refs: list[str] = []
        missing = []
        for quote in check.cites:
            found = quoting(known, quote)
            if found:
                refs.append(found[0])
            else:
                missing.append(quote)
        if missing:
            judge_sentence(check, outcome, refs=refs, missing=missing, got=None)
            continue
        # As `python -m core verify` does: the sentence stands in for a brief when routing judges it.
        ctx.complexity = paragraph_complexity(check.text, [SourceFact(text_of[r], "golden") for r in refs])
        verdict = verifier.judge(ctx, check.text, refs, facts)
        got = Judged(check.text, refs, verdict.verdict, verdict.failure_mode, verdict.reason)
        judge_sentence(check, outcome, refs=refs, missing=[], got=got)
    session.commit()


@dataclass(frozen=True)
class _Usage:
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when any call was unpriced."""


def _usage(session: Session, tenant_id: int, trace_ids: list[str]) -> _Usage:
    e = LlmUsageEvent
    row = session.execute(
        select(
            func.coalesce(func.sum(e.input_tokens), 0),
            func.coalesce(func.sum(e.output_tokens), 0),
            func.sum(e.cost_usd),
            func.count().filter(e.cost_usd.is_(None)),
        ).where(e.tenant_id == tenant_id, e.trace_id.in_(trace_ids))
    ).one()
    unpriced = int(row[3])
    return _Usage(int(row[0]), int(row[1]), None if unpriced else float(row[2] or 0.0))


def _used(session: Session, tenant_id: int, traces: list[str]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """The prompt versions and models the run's calls actually used, by agent (models joined by ", ")."""
    e = LlmUsageEvent
    rows = session.execute(
        select(e.agent, e.prompt_version, e.model)
        .where(e.tenant_id == tenant_id, e.trace_id.in_(traces))
        .distinct()
        .order_by(e.agent, e.prompt_version, e.model)
    ).all()
    versions: dict[str, set[str]] = {}
    models: dict[str, set[str]] = {}
    for agent, version, model in rows:
        versions.setdefault(agent, set()).add(version)
        models.setdefault(agent, set()).add(model)
    return versions, {a: ", ".join(sorted(m)) for a, m in models.items()}


def _finish(
    session: Session,
    run: GoldenRun,
    identity: Identity,
    results: list[GoldenCaseResult],
    traces: list[str],
    started: float,
) -> None:
    """The run's totals, the versions (with their files' sha256) and models it used, and its verdict."""
    settings = get_settings()
    used_versions, used_models = _used(session, identity.tenant_id, traces)
    versions = {agent: ", ".join(sorted(v)) for agent, v in used_versions.items()} | run.prompt_versions
    hashes = {
        agent: ", ".join(prompts.load(agent, v.strip(), settings.prompts_dir).sha256 for v in version.split(","))
        for agent, version in versions.items()
    }
    usage = _usage(session, identity.tenant_id, traces)
    drafted = [s for r in results for s in r.sentences]
    run.prompt_versions = dict(sorted(versions.items()))
    run.prompt_hashes = dict(sorted(hashes.items()))
    run.models = dict(sorted((used_models | run.models).items()))
    run.cases_passed = sum(r.passed for r in results)
    run.expectations_passed = sum(e["passed"] for r in results for e in r.expectations)
    run.sentence_support_rate = sum(s["verdict"] == "supported" for s in drafted) / len(drafted) if drafted else None
    run.paragraph_verification_rate = sum(r.verified for r in results) / len(results) if results else None
    run.false_supports = sum(r.false_supports for r in results)
    run.input_tokens, run.output_tokens, run.cost_usd = usage.input_tokens, usage.output_tokens, usage.cost_usd
    run.latency_ms = (time.perf_counter() - started) * 1000
    run.failing_cases = [r.case_id for r in results if not r.passed]
    run.status = "passed" if not run.failing_cases and run.cases_total == len(results) else "failed"
    run.finished_at = utcnow()
    session.commit()


# -- reading runs --------------------------------------------------------------------------------


def list_runs(session: Session, *, limit: int = 20) -> list[GoldenRun]:
    """The latest golden runs, newest first (runs are workbench-wide: they gate releases)."""
    return list(session.scalars(select(GoldenRun).order_by(GoldenRun.id.desc()).limit(limit)))


def get_run(session: Session, *, run_id: int) -> GoldenRun:
    run = session.get(GoldenRun, run_id)
    if run is None:
        raise NotFoundError(f"No golden run {run_id}; `python -m core golden list` lists them.")
    return run


def case_results(session: Session, *, run_id: int) -> list[GoldenCaseResult]:
    """A run's per-case results, in case order."""
    return list(
        session.scalars(
            select(GoldenCaseResult).where(GoldenCaseResult.run_id == run_id).order_by(GoldenCaseResult.case_id)
        )
    )
