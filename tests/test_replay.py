"""Replay: a drafted paragraph's run sent again through the real gateway, under the same or other
prompt versions and models, with the original work left exactly as it was."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from core import authz, controls, crypto, db, model_registry, prompts
from core.audit import TRACE_VIEWED
from core.errors import (
    GenerationPausedError,
    ModelRetiredError,
    NotFoundError,
    PermissionDeniedError,
    PromptError,
    ReplayError,
)
from core.models import AuditEntry, ParagraphVersion, SentenceCheck, Trajectory, TrajectoryEvent
from core.replay import Replay, prompt_versions, recorded_agents, render_values, replay
from core.settings import PROJECT_ROOT, get_settings, reset_settings
from core.tenancy import Identity, create_tenant
from tests.ui_helpers import MakeApp, seed_drafted

TERSE = "v900"
"""A writer version of the tests' own, numbered past any shipped one."""
WRITER_TERSE = f"""---
agent: writer
version: {TERSE}
model_profile: drafting
temperature: 0.2
max_tokens: 1500
max_sentences: 2
---
You are the Writer, terse edition: draft at most {{max_sentences}} sentences for this brief, each citing
the facts it states.

Brief: {{brief}}
"""


@dataclass(frozen=True)
class Drafted:
    engineer: Identity
    """A prompt engineer of the seeded tenant (may read trace content)."""
    trace_id: str
    paragraph_id: int


def ring() -> crypto.KeyRing:
    return crypto.key_ring(get_settings())


@pytest.fixture
def drafted(clean_db: Engine) -> Drafted:
    seeded = seed_drafted(clean_db)
    with db.session_scope(clean_db) as s:
        trace_id = s.scalar(select(ParagraphVersion.trace_id).where(ParagraphVersion.id == seeded.version_id))
    assert trace_id
    return Drafted(replace(seeded.identity, role="prompt_engineer", name="pe"), trace_id, seeded.paragraph_id)


@pytest.fixture
def prompts_terse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of prompts/ with a writer version that drafts at most two sentences, locked like any version."""
    folder = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", folder)
    (folder / "writer" / f"{TERSE}.md").write_text(WRITER_TERSE)
    assert prompts.lock_new_versions(folder) == [f"writer/{TERSE}"]
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(folder))
    reset_settings()
    yield folder
    monkeypatch.delenv("WORKBENCH_PROMPTS_DIR")
    reset_settings()


def stored_work(engine: Engine, *, trace_id: str, paragraph_id: int) -> dict[str, Any]:
    """Everything a replay must leave alone: the paragraph's versions and checks, the original trace."""
    with db.session_scope(engine) as s:
        versions = s.execute(
            select(ParagraphVersion.id, ParagraphVersion.number, ParagraphVersion.text, ParagraphVersion.status).where(
                ParagraphVersion.paragraph_id == paragraph_id
            )
        ).all()
        checks = s.execute(
            select(SentenceCheck.id, SentenceCheck.text, SentenceCheck.verdict, SentenceCheck.failure_mode).order_by(
                SentenceCheck.id
            )
        ).all()
        run = s.get(Trajectory, trace_id)
        assert run is not None
        events = s.execute(
            select(TrajectoryEvent.id, TrajectoryEvent.content, TrajectoryEvent.key_id, TrajectoryEvent.model)
            .where(TrajectoryEvent.trace_id == trace_id)
            .order_by(TrajectoryEvent.id)
        ).all()
        return {
            "versions": [tuple(v) for v in versions],
            "checks": [tuple(c) for c in checks],
            "run": (run.status, run.calls, run.input_tokens, run.output_tokens, run.version_id),
            "events": [tuple(e) for e in events],
        }


def run_replay(engine: Engine, d: Drafted, **pins: dict[str, str]) -> Replay:
    return replay(
        engine,
        viewer=d.engineer,
        trace_id=d.trace_id,
        prompt_pins=pins.get("prompt_pins", {}),
        model_pins=pins.get("model_pins", {}),
        ring=ring(),
    )


def test_a_replay_as_recorded_gives_the_same_answers_and_changes_nothing(clean_db: Engine, drafted: Drafted) -> None:
    before = stored_work(clean_db, trace_id=drafted.trace_id, paragraph_id=drafted.paragraph_id)
    result = run_replay(clean_db, drafted)

    agents = [c.agent for c in result.calls]
    assert agents[0] == "writer" and "verifier" in agents
    assert all(c.prompt_matches for c in result.calls), "the recorded prompt is rendered again from the input"
    for call in result.calls:
        assert call.same_output, call.agent
        assert (call.replay.prompt_version, call.replay.model) == (call.original.prompt_version, call.original.model)
        assert call.replay.error is None
    verifier_calls = [c for c in result.calls if c.agent == "verifier"]
    assert all(c.original.verdict == c.replay.verdict is not None for c in verifier_calls)
    # Same version, model and input: the tenant's cache may answer, and the replay says when it did.
    hits = result.totals("replay").cache_hits
    assert hits == sum(c.replay.cache_hit for c in result.calls)
    assert all(c.replay.cost_usd == 0.0 for c in result.calls if c.replay.cache_hit)

    assert stored_work(clean_db, trace_id=drafted.trace_id, paragraph_id=drafted.paragraph_id) == before
    with db.session_scope(clean_db) as s:
        run = s.get(Trajectory, result.trace_id)
        assert run is not None
        assert (run.kind, run.status, run.calls, run.version_id) == ("replay", "ok", len(result.calls), None)
        stage = s.scalar(
            select(TrajectoryEvent).where(TrajectoryEvent.trace_id == result.trace_id, TrajectoryEvent.kind == "stage")
        )
        assert stage is not None and stage.attributes["replay_of"] == drafted.trace_id
        entry = s.scalars(select(AuditEntry).where(AuditEntry.event_type == TRACE_VIEWED)).one()
        assert entry.subject == drafted.trace_id
        assert entry.details["replay"] == result.trace_id
        assert entry.details["spans_opened"] == len(result.calls)
        assert s.scalar(select(func.count()).select_from(ParagraphVersion)) == len(before["versions"])


def test_another_prompt_version_changes_the_writer_and_never_answers_from_the_cache(
    clean_db: Engine, drafted: Drafted, prompts_terse: Path
) -> None:
    assert prompt_versions(prompts_terse)["writer"][0] == "v1"
    assert prompt_versions(prompts_terse)["writer"][-1] == TERSE
    before = stored_work(clean_db, trace_id=drafted.trace_id, paragraph_id=drafted.paragraph_id)
    result = run_replay(clean_db, drafted, prompt_pins={"writer": TERSE})

    writer = result.calls[0]
    assert writer.agent == "writer"
    assert (writer.original.prompt_version, writer.replay.prompt_version) == ("v1", TERSE)
    assert not writer.replay.cache_hit and writer.replay.input_tokens > 0
    assert len(writer.original.output["sentences"]) > 2  # type: ignore[index]
    assert len(writer.replay.output["sentences"]) == 2  # type: ignore[index]
    assert not writer.same_output
    # Only the writer was pinned: every other call ran as it was recorded.
    others = result.calls[1:]
    assert others and all(c.replay.prompt_version == "v1" and c.same_output for c in others)
    assert result.prompt_pins == {"writer": TERSE}
    assert stored_work(clean_db, trace_id=drafted.trace_id, paragraph_id=drafted.paragraph_id) == before


def test_a_model_pin_runs_on_that_model_and_a_retired_one_is_refused(clean_db: Engine, drafted: Drafted) -> None:
    admin = replace(drafted.engineer, role=authz.ADMIN, name="admin")
    spec = model_registry.ModelSpec("local-verifier-2", "local", input_per_mtok=0.0, output_per_mtok=0.0)
    with db.session_scope(clean_db) as s:
        model_registry.register(s, by=admin, spec=spec)

    result = run_replay(clean_db, drafted, model_pins={"verifier": "local-verifier-2"})
    verifier_calls = [c for c in result.calls if c.agent == "verifier"]
    assert verifier_calls
    for call in verifier_calls:
        assert (call.original.model, call.replay.model) == ("local-verifier-1", "local-verifier-2")
        assert not call.replay.cache_hit  # another model never gets the original's cached answer
        assert call.replay.verdict == call.original.verdict  # the local provider judges the same either way
    assert all(c.replay.model == c.original.model for c in result.calls if c.agent != "verifier")

    with db.session_scope(clean_db) as s:
        model_registry.retire(s, by=admin, model="local-verifier-2", reason="replaced")
    with pytest.raises(ModelRetiredError, match=r"local-verifier-2 was retired.*pick another model for the verifier"):
        run_replay(clean_db, drafted, model_pins={"verifier": "local-verifier-2"})
    with pytest.raises(ReplayError, match="served by openai, but this workbench calls local"):
        run_replay(clean_db, drafted, model_pins={"writer": "gpt-4o-mini"})


def test_refusals_name_what_to_do(clean_db: Engine, drafted: Drafted) -> None:
    with pytest.raises(PromptError, match=r"no prompt version v9 \(locked: v1[,)]"):
        run_replay(clean_db, drafted, prompt_pins={"writer": "v9"})
    with pytest.raises(ReplayError, match="Unknown agent"):
        run_replay(clean_db, drafted, prompt_pins={"editor": "v1"})

    ops = replace(drafted.engineer, role=authz.ADMIN, name="ops")
    controls.set_kill_switch(clean_db, engaged=True, reason="provider incident", actor=ops)
    with pytest.raises(GenerationPausedError, match="kill switch"):
        run_replay(clean_db, drafted)
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=ops)

    lost_key = crypto.KeyRing(keys=(("k-new", os.urandom(32)),))
    with pytest.raises(ReplayError, match="no longer holds"):
        replay(
            clean_db, viewer=drafted.engineer, trace_id=drafted.trace_id, prompt_pins={}, model_pins={}, ring=lost_key
        )
    with db.session_scope(clean_db) as s:
        # Nothing was opened, so nothing was audited as read; nothing was sent either.
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.event_type == TRACE_VIEWED)) == 0
        assert s.scalar(select(func.count()).select_from(Trajectory).where(Trajectory.kind == "replay")) == 0


def test_another_tenant_and_a_role_without_trace_content_are_refused(clean_db: Engine, drafted: Drafted) -> None:
    with db.session_scope(clean_db) as s:
        stranger = replace(create_tenant(s, slug="other", name="Other lab"), role="prompt_engineer")
    with pytest.raises(NotFoundError, match="No trajectory"):
        replay(clean_db, viewer=stranger, trace_id=drafted.trace_id, prompt_pins={}, model_pins={}, ring=ring())
    researcher = replace(drafted.engineer, role=authz.RESEARCHER)
    with pytest.raises(PermissionDeniedError, match="read the decrypted content of traces"):
        replay(clean_db, viewer=researcher, trace_id=drafted.trace_id, prompt_pins={}, model_pins={}, ring=ring())
    with db.session_scope(clean_db) as s, pytest.raises(PermissionDeniedError):
        recorded_agents(s, viewer=researcher, trace_id=drafted.trace_id)
    with db.session_scope(clean_db) as s:
        agents = recorded_agents(s, viewer=drafted.engineer, trace_id=drafted.trace_id)
    assert [a.agent for a in agents][:2] == ["writer", "verifier"]
    assert all(a.prompt_versions == ("v1",) for a in agents)


def test_render_values_rebuild_each_agents_prompt() -> None:
    from core.agents.contracts import LibrarianInput

    payload = LibrarianInput(chunk_text="Biochar cut nitrate leaching by 30 %.", page=2, document_title="Okafor")
    rendered = prompts.load("librarian").render(**render_values(payload))
    assert "Biochar cut nitrate leaching by 30 %." in rendered and "{chunk_text}" not in rendered


def test_the_page_shows_the_original_and_the_replay_side_by_side(
    clean_db: Engine, drafted: Drafted, make_app: MakeApp, prompts_terse: Path
) -> None:
    at = make_app("pages/replay.py", role="prompt_engineer")
    at.query_params["trace"] = drafted.trace_id
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="replay_version_writer").set_value(TERSE)
    at.button(key="replay_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    headers = [m.value for m in at.markdown]
    assert any("Original" in h for h in headers) and any("Replay" in h for h in headers)
    texts = [t.value for t in at.text]
    assert any("v1" in t for t in texts) and any(TERSE in t for t in texts)
    tables = [d.value for d in at.dataframe]
    assert "Tokens in" in tables[0].columns and list(tables[0]["Run"]) == ["Original", "Replay"]
    drafts = [len(t) for t in tables if "Sentence" in t.columns]
    assert drafts[:2] == [drafts[0], 2] and drafts[0] > 2, "the writer's two drafts, original then replay"


def test_the_trajectories_page_links_a_trace_to_its_replay(
    clean_db: Engine, drafted: Drafted, make_app: MakeApp
) -> None:
    at = make_app("pages/trajectories.py", role="prompt_engineer")
    at.query_params["trace"] = drafted.trace_id
    at.run()
    assert not at.exception, at.exception
    (link,) = at.get("page_link")
    assert link.proto.label == "Replay this run"
    assert link.proto.query_string == f"trace={drafted.trace_id}"
