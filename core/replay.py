"""Replay: a recorded run's agent calls sent again, under other prompt versions or models, side by side.

Every agent call of a run is an ``agent`` span whose sealed content holds the payload the agent
got, the prompt rendered from it, and the answer (``core.tracing``). ``replay`` opens those spans
(the viewer's tenant only, ``VIEW_TRACE_CONTENT``, audited as ``TRACE_VIEWED``), and sends each
payload through the real gateway again, in the original order, under a new trace of kind
``replay``. Each call keeps the original prompt version and model unless the caller pins another
for its agent, so a replay changes only what was asked for. Nothing is saved but the gateway's
own records (usage events, spans, cache): no paragraph version, no sentence check, and the
original trace is only read, so a replay can never change stored work.

What is replayed is each call on its own recorded input, not the pipeline: a Verifier call is
given the sentence the original Writer wrote, even when the replayed Writer now writes another.
The Writer's ``search_corpus`` tool answers from the manuscript's facts as they are now.

The cache is the gateway's: it is keyed by prompt version and model, so a call replayed as it
was may be answered from the tenant's cache (``Side.cache_hit`` says so), and a call under
another version or model never gets the original's answer from it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from core import audit, authz, controls, crypto, gateway, model_registry, prompts, retrieval, tracing
from core.agents import verifier
from core.agents.contracts import (
    LibrarianInput,
    LibrarianOutput,
    RewriterInput,
    RewriterOutput,
    VerifierInput,
    VerifierOutput,
    WriterInput,
    WriterOutput,
)
from core.agents.guard import FactText
from core.authz import Permission
from core.db import session_scope
from core.errors import ModelRetiredError, NotFoundError, PromptError, ReplayError, WorkbenchError
from core.models import Trajectory, TrajectoryEvent
from core.providers import get_provider
from core.settings import Settings, get_settings
from core.tenancy import Identity

REPLAY_KIND: tracing.Kind = "replay"
"""The trajectory kind of a replay (its first stage span names the trace it replays)."""

CONTRACTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "librarian": (LibrarianInput, LibrarianOutput),
    "writer": (WriterInput, WriterOutput),
    "verifier": (VerifierInput, VerifierOutput),
    "rewriter": (RewriterInput, RewriterOutput),
}
"""Each agent's input and output contract (``core.agents.contracts``)."""


@dataclass(frozen=True)
class Side:
    """One side of a replayed call: what ran, what it answered, what it cost."""

    prompt_version: str
    model: str
    output: dict[str, Any] | None
    """The agent's validated answer (a Verifier's before the guard); None when the call failed."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    """None when the model has no price."""
    latency_ms: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    """Why the call failed: the error's message (replay) or its class (original)."""
    verdict: VerifierOutput | None = None
    """Verifier calls: the final verdict, the deterministic guard applied as the pipeline applies it."""


@dataclass(frozen=True)
class ReplayedCall:
    agent: str
    input: dict[str, Any]
    """The recorded payload both sides were given."""
    prompt_matches: bool
    """The original prompt version renders this input to exactly the recorded prompt."""
    original: Side
    replay: Side

    @property
    def same_output(self) -> bool:
        return self.original.output == self.replay.output


@dataclass(frozen=True)
class Totals:
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_ms: float
    cache_hits: int
    errors: int


@dataclass(frozen=True)
class Replay:
    original_trace_id: str
    trace_id: str
    """The replay's own trace (kind ``replay``)."""
    original_kind: str
    calls: list[ReplayedCall]
    prompt_pins: dict[str, str]
    model_pins: dict[str, str]

    def totals(self, side: Literal["original", "replay"]) -> Totals:
        sides = [getattr(call, side) for call in self.calls]
        costs = [s.cost_usd for s in sides]
        return Totals(
            sum(s.input_tokens for s in sides),
            sum(s.output_tokens for s in sides),
            None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
            sum(s.latency_ms for s in sides),
            sum(s.cache_hit for s in sides),
            sum(s.error is not None for s in sides),
        )


@dataclass(frozen=True)
class RecordedAgent:
    """What a trace's calls of one agent ran under (clear columns only; nothing is opened)."""

    agent: str
    calls: int
    prompt_versions: tuple[str, ...]
    models: tuple[str, ...]


@dataclass(frozen=True)
class _Plan:
    event: TrajectoryEvent
    version: str
    model: str


# -- what a trace holds, and what it may be replayed with -------------------------------------------


def recorded_agents(session: Session, *, viewer: Identity, trace_id: str) -> list[RecordedAgent]:
    """The agents a trace of the viewer's tenant called, with the versions and models they ran under."""
    authz.require(viewer, Permission.VIEW_TRACE_CONTENT)
    _trajectory(session, viewer.tenant_id, trace_id)
    events = _agent_spans(session, viewer.tenant_id, trace_id)
    agents = dict.fromkeys(e.agent or "" for e in events)
    return [
        RecordedAgent(
            agent,
            sum(e.agent == agent for e in events),
            tuple(dict.fromkeys(e.prompt_version or "" for e in events if e.agent == agent)),
            tuple(dict.fromkeys(e.model or "" for e in events if e.agent == agent)),
        )
        for agent in agents
    ]


def _version_key(version: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", version)
    return (int(digits) if digits else 0, version)


def prompt_versions(prompts_dir: Path) -> dict[str, list[str]]:
    """Every locked version of each agent (``prompts.lock.json``), oldest first."""
    found: dict[str, list[str]] = {agent: [] for agent in prompts.AGENTS}
    for key in prompts.read_lock(prompts_dir / prompts.LOCK_FILE.name):
        agent, _, version = key.partition("/")
        if agent in found:
            found[agent].append(version)
    return {agent: sorted(versions, key=_version_key) for agent, versions in found.items()}


def pinnable_models(connection: Connection, *, provider: str) -> list[str]:
    """The active registered models the configured provider serves."""
    registry = model_registry.snapshot(connection)
    return sorted(
        model
        for model, entry in registry.entries.items()
        if entry.spec.provider == provider and registry.status(model) == model_registry.ACTIVE
    )


# -- replaying -----------------------------------------------------------------------------------


def replay(
    engine: Engine,
    *,
    viewer: Identity,
    trace_id: str,
    prompt_pins: Mapping[str, str],
    model_pins: Mapping[str, str],
    ring: crypto.KeyRing,
) -> Replay:
    """Send every agent call of ``trace_id`` again, each under the pinned version and model of its agent
    (else the ones it ran under), and return both sides of each call.

    Refused before anything is opened or sent: a role without ``VIEW_TRACE_CONTENT``
    (``PermissionDeniedError``), a trace of another tenant (``NotFoundError``), a prompt version
    that does not exist (``PromptError``), a retired or unregistered model (``ModelRetiredError``),
    the kill switch or an open breaker (``GenerationPausedError``), a trace with no agent calls or
    content no key of ``ring`` opens (``ReplayError``). A call that fails while the replay runs
    (budget, provider, contract) is reported on its ``replay`` side, and the others still run.
    """
    authz.require(viewer, Permission.VIEW_TRACE_CONTENT)
    settings = get_settings()
    prompt_pins, model_pins = _pins(prompt_pins), _pins(model_pins)
    new_trace = uuid.uuid4().hex
    with session_scope(engine) as s:
        original = _trajectory(s, viewer.tenant_id, trace_id)
        events = _agent_spans(s, viewer.tenant_id, trace_id)
        if not events:
            raise ReplayError(
                f"Run {trace_id} made no agent calls, so there is nothing to replay; pick a drafted paragraph's "
                "run or a PDF ingest."
            )
        plans = [
            _Plan(
                e,
                prompt_pins.get(e.agent or "") or e.prompt_version or prompts.DEFAULT_VERSION,
                model_pins.get(e.agent or "") or e.model or "",
            )
            for e in events
        ]
        _check(engine, plans, settings, new_trace)
        recorded = [_open(e, ring) for e in events]
        audit.record(
            s.connection(),
            audit.TRACE_VIEWED,
            actor=viewer,
            tenant_id=viewer.tenant_id,
            subject=trace_id,
            details={
                "kind": original.kind,
                "spans_opened": len(recorded),
                "replay": new_trace,
                "prompt_pins": prompt_pins,
                "model_pins": model_pins,
            },
        )
        kind, paragraph_id, manuscript_id = original.kind, original.paragraph_id, original.manuscript_id
    # The content read is on the record (committed) whatever happens to the replay itself.
    with session_scope(engine) as s:
        ctx = gateway.CallContext(session=s, tenant_id=viewer.tenant_id, trace_id=new_trace)
        gateway.open_paragraph_budget(ctx, settings=settings)
        tools = (
            {"search_corpus": retrieval.search_corpus_tool(s, tenant_id=viewer.tenant_id, manuscript_id=manuscript_id)}
            if manuscript_id is not None
            else None
        )
        calls: list[ReplayedCall] = []
        failures: list[WorkbenchError] = []
        with tracing.run(ctx, REPLAY_KIND, paragraph_id=paragraph_id, manuscript_id=manuscript_id) as run:
            with run.stage("replay", replay_of=trace_id, calls=len(plans)):
                last_span = 0
                for plan, content in zip(plans, recorded, strict=True):
                    call, last_span, failure = _replay_call(ctx, plan, content, tools, last_span, settings)
                    calls.append(call)
                    if failure is not None:
                        failures.append(failure)
            if failures:
                run.fail(failures[0])
            else:
                run.done()
    return Replay(trace_id, new_trace, kind, calls, prompt_pins, model_pins)


def _pins(pins: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(pins) - set(prompts.AGENTS))
    if unknown:
        raise ReplayError(f"Unknown agent {', '.join(unknown)}; agents are {', '.join(prompts.AGENTS)}.")
    return {agent: value.strip() for agent, value in pins.items() if value and value.strip()}


def _trajectory(session: Session, tenant_id: int, trace_id: str) -> Trajectory:
    trajectory = session.scalar(
        select(Trajectory).where(Trajectory.tenant_id == tenant_id, Trajectory.trace_id == trace_id)
    )
    if trajectory is None:
        raise NotFoundError(
            f"No trajectory '{trace_id}' in this workspace: it may belong to another tenant, or the run never "
            "started recording. Pick one from the list."
        )
    return trajectory


def _agent_spans(session: Session, tenant_id: int, trace_id: str) -> list[TrajectoryEvent]:
    return list(
        session.scalars(
            select(TrajectoryEvent)
            .where(
                TrajectoryEvent.tenant_id == tenant_id,
                TrajectoryEvent.trace_id == trace_id,
                TrajectoryEvent.kind == "agent",
                TrajectoryEvent.agent.in_(tuple(CONTRACTS)),
            )
            .order_by(TrajectoryEvent.started_at, TrajectoryEvent.id)
        )
    )


def _check(engine: Engine, plans: list[_Plan], settings: Settings, trace_id: str) -> None:
    """Refuse a replay that could not run as asked before anything is opened or sent."""
    locked = prompt_versions(settings.prompts_dir)
    provider = get_provider(settings.provider).name
    with engine.begin() as connection:
        registry = model_registry.snapshot(connection)
    for agent, version, model in dict.fromkeys((p.event.agent or "", p.version, p.model) for p in plans):
        if version not in locked.get(agent, []):
            raise PromptError(
                f"The {agent} has no prompt version {version} (locked: {', '.join(locked.get(agent, [])) or 'none'}); "
                f"pick one of those, or add the file and run `python -m core prompts lock`."
            )
        prompts.load(agent, version, settings.prompts_dir)  # a file changed after it was locked is refused here
        refusal = registry.refusal(model)
        if refusal is not None:
            raise ModelRetiredError(f"{refusal} To replay this run, pick another model for the {agent}.")
        elsewhere = registry.other_provider(model, provider)
        if elsewhere is not None:
            raise ReplayError(f"{elsewhere}; pick a {provider} model for the {agent} to replay this run.")
    controls.check(engine, provider=provider, trace_id=trace_id, drafting=False, settings=settings)


def _open(event: TrajectoryEvent, ring: crypto.KeyRing) -> dict[str, Any]:
    aad = crypto.span_aad(event.tenant_id, event.trace_id, event.span_id)
    try:
        if event.content is None or not event.key_id:
            raise crypto.DecryptionError("it was stored without content or key id")
        content = ring.open_json(event.key_id, event.content, aad=aad)
    except (crypto.DecryptionError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReplayError(
            f"The recorded input of this run's {event.agent} call cannot be opened ({error}); it was sealed under "
            f"key '{event.key_id}', which the key ring no longer holds. Add that key back to "
            "WORKBENCH_ENCRYPTION_KEYS (after the active one) to replay this run."
        ) from error
    if not isinstance(content, dict) or not isinstance(content.get("input"), dict):
        raise ReplayError(f"This run's {event.agent} call recorded no input, so it cannot be replayed.")
    return content


def render_values(payload: BaseModel) -> dict[str, object]:
    """The values the pipeline renders an agent's prompt with, from its payload (the call sites in
    ``core.pipeline``, ``core.agents.verifier`` and ``core.facts``)."""
    if isinstance(payload, WriterInput):
        return {"brief": payload.brief, "max_sentences": payload.max_sentences}
    if isinstance(payload, VerifierInput):
        facts = "\n".join(f"{f.id}: {f.text}" for f in payload.facts)
        return {"sentence": payload.sentence, "cited": ", ".join(payload.cited), "facts": facts}
    if isinstance(payload, RewriterInput):
        facts = "\n".join(f"{f.id}: {f.text}" for f in payload.facts)
        return {
            "sentence": payload.sentence,
            "failure_mode": payload.failure_mode or "",
            "reason": payload.reason,
            "facts": facts,
        }
    if isinstance(payload, LibrarianInput):
        return {"chunk_text": payload.chunk_text, "page": payload.page, "document_title": payload.document_title}
    raise ReplayError(f"No agent takes a {type(payload).__name__}.")


def _final_verdict(payload: BaseModel, output: dict[str, Any] | None) -> VerifierOutput | None:
    if not isinstance(payload, VerifierInput) or output is None:
        return None
    facts = [FactText(f.id, f.text) for f in payload.facts]
    return verifier.guarded(VerifierOutput.model_validate(output), payload.sentence, payload.cited, facts)


def _side(event: TrajectoryEvent | None, version: str, model: str, output: dict[str, Any] | None) -> Side:
    if event is None:  # refused before the gateway recorded it
        return Side(version, model, output)
    return Side(
        event.prompt_version or version,
        event.model or model,
        output,
        event.input_tokens,
        event.output_tokens,
        None if event.cost_usd is None else float(event.cost_usd),
        float(event.duration_ms or 0.0),
        bool((event.attributes or {}).get("cache_hit")),
        event.error_class,
    )


def _replay_call(
    ctx: gateway.CallContext,
    plan: _Plan,
    content: dict[str, Any],
    tools: dict[str, Any] | None,
    last_span: int,
    settings: Settings,
) -> tuple[ReplayedCall, int, WorkbenchError | None]:
    agent = plan.event.agent or ""
    input_type, output_type = CONTRACTS[agent]
    payload = input_type.model_validate(content["input"])
    values = render_values(payload)
    original_version = plan.event.prompt_version or prompts.DEFAULT_VERSION
    try:
        matches = prompts.load(agent, original_version, settings.prompts_dir).render(**values) == content.get("prompt")
    except PromptError:  # the original version's file is gone: nothing to compare the rendering with
        matches = False
    ctx.prompt_pins, ctx.model_pins = {agent: plan.version}, {agent: plan.model}
    output: dict[str, Any] | None = None
    failure: WorkbenchError | None = None
    try:
        answer = gateway.run_agent(
            agent, payload, output_type, ctx=ctx, render=values, tools=tools if agent == "writer" else None
        )
        output = answer.model_dump(mode="json")
    except WorkbenchError as error:
        failure = error
    # The call's agent span, committed on the gateway's ledger: the first one after the last call's.
    event = ctx.session.scalar(
        select(TrajectoryEvent)
        .where(
            TrajectoryEvent.tenant_id == ctx.tenant_id,
            TrajectoryEvent.trace_id == ctx.trace_id,
            TrajectoryEvent.kind == "agent",
            TrajectoryEvent.id > last_span,
        )
        .order_by(TrajectoryEvent.id)
        .limit(1)
    )
    replayed = _side(event, plan.version, plan.model, output)
    if failure is not None:
        replayed = replace(replayed, error=str(failure))
    recorded = content.get("output")
    original_output = recorded if isinstance(recorded, dict) else None
    original = _side(plan.event, original_version, plan.event.model or "", original_output)
    call = ReplayedCall(
        agent,
        payload.model_dump(mode="json"),
        matches,
        replace(original, verdict=_final_verdict(payload, original_output)),
        replace(replayed, verdict=_final_verdict(payload, output)),
    )
    return call, event.id if event is not None else last_span, failure
