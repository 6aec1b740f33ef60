"""Prompt deployments: the release gate (Must show 2), activation, rollback and who may do them.

Candidate versions live in a temporary prompts directory (``WORKBENCH_PROMPTS_DIR``): writer v2
(the shipped text plus one line: passes the golden set), writer v3 (never run through it) and a
lenient verifier v2 (the golden set catches it). Passing and failing golden runs are real runs
of ``core.golden_runner.run_golden`` with the local provider, never hand-made rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit, cli, deployments, prompts, routing
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import DeploymentError, PermissionDeniedError, ReleaseGateError, RoutingConfigError
from core.golden_runner import run_golden
from core.manuscripts import add_paragraph, create_manuscript
from core.models import AuditEntry, LlmUsageEvent, ParagraphVersion, PromptDeployment, SentenceCheck
from core.pipeline import draft_paragraph
from core.settings import get_settings, reset_settings
from core.sources import add_source
from core.tenancy import Identity

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def prompts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped v1 prompts plus candidates, locked, in a directory of their own."""
    target = tmp_path / "prompts"
    for agent in prompts.AGENTS:  # the shipped v1 of each agent only: the candidates' names stay free
        (target / agent).mkdir(parents=True)
        shutil.copy(ROOT / "prompts" / agent / "v1.md", target / agent / "v1.md")
    writer = (target / "writer" / "v1.md").read_text()
    (target / "writer" / "v2.md").write_text(
        writer.replace("version: v1", "version: v2") + "Prefer one fact per sentence.\n"
    )
    (target / "writer" / "v3.md").write_text(writer.replace("version: v1", "version: v3") + "Be brief.\n")
    verifier = (target / "verifier" / "v1.md").read_text()
    (target / "verifier" / "v2.md").write_text(
        verifier.replace("version: v1", "version: v2").replace(
            "max_tokens: 400", "max_tokens: 400\nstrictness: lenient"
        )
    )
    prompts.lock_new_versions(target)
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(target))
    reset_settings()
    yield target
    monkeypatch.delenv("WORKBENCH_PROMPTS_DIR")
    reset_settings()


def as_role(identity: Identity, role: str) -> Identity:
    return replace(identity, role=role, name=f"{role}@localhost")


@pytest.fixture
def engineer(identity: Identity) -> Identity:
    return as_role(identity, "prompt_engineer")


@pytest.fixture
def manuscript(session: Session, identity: Identity) -> int:
    m = create_manuscript(session, tenant_id=identity.tenant_id, title="Drought paper", user_id=identity.user_id)
    for filename, data in demo_pdfs():
        add_source(session, identity=identity, manuscript_id=m.id, filename=filename, data=data, trace_id="t-ingest")
    session.commit()
    return m.id


def draft(
    session: Session, identity: Identity, manuscript: int, *, paragraph_id: int | None = None
) -> ParagraphVersion:
    if paragraph_id is None:
        paragraph_id = add_paragraph(
            session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[0]
        ).id
        session.commit()
    version = draft_paragraph(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph_id
    )
    session.commit()
    return version


def prompt_audit(session: Session) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.event_type == audit.PROMPT_CHANGED).order_by(AuditEntry.seq)
        )
    )


def stored_versions(session: Session, tenant_id: int) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Every paragraph version and sentence check of the tenant, column by column, by table and id."""
    session.expire_all()
    out: dict[tuple[str, int], tuple[Any, ...]] = {}
    for model in (ParagraphVersion, SentenceCheck):
        columns = model.__table__.columns
        for row in session.execute(select(*columns).where(columns.tenant_id == tenant_id)):
            out[(model.__tablename__, row.id)] = tuple(row)
    return out


# -- Must show 2: no passing golden run, no activation ---------------------------------------------


def test_activation_without_a_passing_golden_run_is_refused(
    clean_db: Engine, session: Session, engineer: Identity, prompts_dir: Path
) -> None:
    with pytest.raises(ReleaseGateError) as refused:
        deployments.activate(session, by=engineer, agent="writer", version="v2")
    assert "python -m core golden run --prompt writer=v2" in str(refused.value)
    session.rollback()

    failing = run_golden(clean_db, prompt_pins={"verifier": "v2"}, label="lenient verifier")
    assert failing.status == "failed" and failing.failing_cases
    with pytest.raises(ReleaseGateError) as refused:
        deployments.activate(session, by=engineer, agent="verifier", version="v2")
    message = str(refused.value)
    assert f"#{failing.id}" in message and failing.failing_cases[0] in message
    assert "python -m core golden run --prompt verifier=v2" in message
    session.rollback()
    # A passing run of another file (writer v2) opens the gate for that file only.
    assert run_golden(clean_db, prompt_pins={"writer": "v2"}).status == "passed"
    with pytest.raises(ReleaseGateError):
        deployments.activate(session, by=engineer, agent="writer", version="v3")
    with pytest.raises(ReleaseGateError):
        deployments.start_canary(session, by=engineer, agent="verifier", version="v2", share=0.5)
    session.rollback()
    assert session.scalars(select(PromptDeployment)).all() == []
    assert prompt_audit(session) == []
    assert deployments.active_versions(session) == dict.fromkeys(prompts.AGENTS, prompts.DEFAULT_VERSION)


def test_the_cli_refuses_activation_without_a_passing_run_and_exits_1(
    clean_db: Engine, session: Session, identity: Identity, prompts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["prompts", "activate", "writer", "v2", "--reason", "shorter sentences"]) == 1
    err = capsys.readouterr().err
    assert "no passing golden run" in err and "python -m core golden run --prompt writer=v2" in err
    assert cli.main(["prompts", "canary", "writer", "v2", "--share", "0.2"]) == 1
    assert "python -m core golden run --prompt writer=v2" in capsys.readouterr().err
    assert session.scalars(select(PromptDeployment)).all() == []

    assert run_golden(clean_db, prompt_pins={"writer": "v2"}).status == "passed"
    assert cli.main(["prompts", "activate", "writer", "v2", "--reason", "shorter sentences"]) == 0
    assert "writer v2 is active" in capsys.readouterr().out
    assert cli.main(["prompts", "status"]) == 0
    out = capsys.readouterr().out
    assert "writer: v2 sha256" in out and "verifier: v1" in out


# -- activation with a passing run -----------------------------------------------------------------


def test_a_passing_run_of_the_exact_file_activates_it_and_drafts_use_it(
    clean_db: Engine, session: Session, identity: Identity, engineer: Identity, manuscript: int, prompts_dir: Path
) -> None:
    before = draft(session, identity, manuscript)
    assert before.prompt_versions["writer"] == "v1"

    run = run_golden(clean_db, prompt_pins={"writer": "v2"}, label="writer v2")
    assert run.status == "passed"
    check = deployments.gate_check(session, agent="writer", version="v2")
    assert check.passed and check.passing_run_id == run.id
    assert (
        check.sha256 == prompts.load("writer", "v2", get_settings().prompts_dir).sha256 == run.prompt_hashes["writer"]
    )

    row = deployments.activate(session, by=engineer, agent="writer", version="v2", reason="one fact per sentence")
    session.commit()
    assert (row.status, row.golden_run_id, row.sha256) == ("active", run.id, check.sha256)
    assert deployments.active_versions(session)["writer"] == "v2"
    assert deployments.pins_for(session, paragraph_id=12345)["writer"] == "v2"

    after = draft(session, identity, manuscript)
    assert after.prompt_versions["writer"] == "v2"
    assert after.prompt_versions["verifier"] == "v1"
    events = session.scalars(select(LlmUsageEvent).where(LlmUsageEvent.trace_id == after.trace_id)).all()
    assert {e.prompt_version for e in events if e.agent == "writer"} == {"v2"}

    (entry,) = prompt_audit(session)
    assert entry.actor == engineer.name and entry.subject == "writer v2"
    assert entry.details["action"] == "activate" and entry.details["golden_run_id"] == run.id
    assert entry.details["previous"] == "v1" and entry.details["reason"] == "one fact per sentence"

    with pytest.raises(DeploymentError, match="already the active version"):
        deployments.activate(session, by=engineer, agent="writer", version="v2")


def test_activating_the_implicit_default_pins_it(clean_db: Engine, session: Session, engineer: Identity) -> None:
    """With no deployment row the shipped default serves implicitly; production needs it pinned by an
    explicit activation (through the gate), and activating it a second time is the no-op."""
    assert run_golden(clean_db).status == "passed"
    row = deployments.activate(session, by=engineer, agent="writer", version="v1", reason="pin for production")
    session.commit()
    assert (row.status, row.version) == ("active", "v1") and row.golden_run_id is not None
    with pytest.raises(DeploymentError, match="already the active version"):
        deployments.activate(session, by=engineer, agent="writer", version="v1")


@pytest.mark.parametrize("role", ["researcher", "ops"])
def test_every_deployment_action_is_refused_without_manage_prompts(
    clean_db: Engine, session: Session, identity: Identity, engineer: Identity, prompts_dir: Path, role: str
) -> None:
    assert run_golden(clean_db, prompt_pins={"writer": "v2"}).status == "passed"
    deployments.start_canary(session, by=engineer, agent="writer", version="v2", share=0.3)
    session.commit()
    who = as_role(identity, role)
    actions = [
        lambda: deployments.activate(session, by=who, agent="writer", version="v2"),
        lambda: deployments.start_canary(session, by=who, agent="writer", version="v2", share=0.3),
        lambda: deployments.promote(session, by=who, agent="writer"),
        lambda: deployments.rollback(session, by=who, agent="writer", reason="no"),
        lambda: deployments.retire(session, by=who, agent="writer"),
    ]
    for action in actions:
        with pytest.raises(PermissionDeniedError, match="activate, canary or roll back prompt versions"):
            action()
    session.rollback()
    assert [a.canary_version for a in deployments.status(session) if a.canary] == ["v2"]
    assert len(prompt_audit(session)) == 1  # the engineer's canary, nothing else


# -- rollback -------------------------------------------------------------------------------------


def test_rollback_returns_to_the_previous_version_and_keeps_earlier_versions_as_they_were(
    clean_db: Engine, session: Session, identity: Identity, engineer: Identity, manuscript: int, prompts_dir: Path
) -> None:
    assert run_golden(clean_db, prompt_pins={"writer": "v2"}).status == "passed"
    deployments.activate(session, by=engineer, agent="writer", version="v2")
    session.commit()
    drafted = draft(session, identity, manuscript)
    assert drafted.prompt_versions["writer"] == "v2"
    snapshot = stored_versions(session, identity.tenant_id)

    with pytest.raises(DeploymentError, match="Say why"):
        deployments.rollback(session, by=engineer, agent="writer", reason=" ")
    with pytest.raises(ReleaseGateError, match="Cannot roll back to v3"):
        deployments.rollback(session, by=engineer, agent="writer", reason="bad", to_version="v3")
    session.rollback()

    row = deployments.rollback(session, by=engineer, agent="writer", reason="reviewers prefer v1")
    session.commit()
    assert row is not None and row.version == "v1"
    assert deployments.active_versions(session)["writer"] == "v1"
    assert stored_versions(session, identity.tenant_id) == snapshot  # byte for byte, verdicts included

    again = draft(session, identity, manuscript, paragraph_id=drafted.paragraph_id)
    assert again.prompt_versions["writer"] == "v1" and again.number == drafted.number + 1
    now = stored_versions(session, identity.tenant_id)
    assert {key: now[key] for key in snapshot} == snapshot and len(now) > len(snapshot)

    history = session.scalars(select(PromptDeployment).order_by(PromptDeployment.id)).all()
    assert [(h.version, h.status, h.ended_at is None) for h in history] == [
        ("v2", "rolled_back", False),
        ("v1", "active", True),
    ]
    entry = prompt_audit(session)[-1]
    assert entry.details["action"] == "rollback" and entry.details["previous"] == "v2"
    assert entry.details["reason"] == "reviewers prefer v1"

    with pytest.raises(DeploymentError, match="already"):
        deployments.rollback(session, by=engineer, agent="writer", reason="again", to_version="v1")
    # v2 passed the gate once, so it may be rolled *forward* to as well.
    assert deployments.rollback(session, by=engineer, agent="writer", reason="v2 after all", to_version="v2")


def test_an_agent_on_its_shipped_version_has_nothing_to_roll_back(
    session: Session, engineer: Identity, prompts_dir: Path
) -> None:
    with pytest.raises(DeploymentError, match="nothing to roll back"):
        deployments.rollback(session, by=engineer, agent="verifier", reason="why not")
    with pytest.raises(DeploymentError, match="Unknown agent"):
        deployments.rollback(session, by=engineer, agent="editor", reason="why not")


# -- model rollback: routing versions ---------------------------------------------------------------


def test_routing_restore_saves_an_earlier_version_as_the_newest(
    session: Session, identity: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings()
    ops = as_role(identity, "ops")
    base = routing.current_config(session, tenant_id=identity.tenant_id, settings=settings).config
    first = routing.save_config(
        session, tenant_id=identity.tenant_id, config=base, actor=ops, note="start", settings=settings
    )
    changed = base.model_copy(update={"simple_below": base.simple_below + 5})
    routing.save_config(session, tenant_id=identity.tenant_id, config=changed, actor=ops, note="up", settings=settings)
    session.commit()

    with pytest.raises(PermissionDeniedError):
        routing.restore_config(
            session, tenant_id=identity.tenant_id, by=as_role(identity, "researcher"), version=1, settings=settings
        )
    with pytest.raises(RoutingConfigError, match="no routing version 9"):
        routing.restore_config(session, tenant_id=identity.tenant_id, by=ops, version=9, settings=settings)
    restored = routing.restore_config(session, tenant_id=identity.tenant_id, by=ops, version=1, settings=settings)
    session.commit()
    assert restored.version == 3 and restored.config == first.config and restored.note == "restored routing v1"
    assert [c.version for c in routing.config_history(session, tenant_id=identity.tenant_id)] == [3, 2, 1]
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.event_type == audit.ROUTING_CHANGED).order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None and entry.details["version"] == 3 and entry.details["note"] == "restored routing v1"
    with pytest.raises(RoutingConfigError, match="nothing to restore"):
        routing.restore_config(session, tenant_id=identity.tenant_id, by=ops, version=1, settings=settings)
    session.rollback()

    assert cli.main(["routing", "restore", "2", "--actor", "Ana"]) == 0
    assert "routing version 2 restored as routing v4" in capsys.readouterr().out
