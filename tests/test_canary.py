"""Canaries: a deterministic share of paragraphs, figures against the baseline, automatic rollback
(Must show 3), promotion.

The candidate is writer v2 of the temporary prompts directory (``tests.test_deployments``): it
passes a real golden run, so the release gate lets it serve a share of paragraphs; researchers
then find a false support in what it drafted, and the workbench rolls it back on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import audit, cli, deployments
from core.alerts import AlertSchedule
from core.canary import PROMOTE, ROLLBACK, WATCHING, ArmFigures, judge
from core.demo_corpus import DEMO_BRIEFS
from core.errors import DeploymentError
from core.false_supports import report_false_support
from core.golden_runner import run_golden
from core.manuscripts import add_paragraph
from core.models import AuditEntry, FalseSupportReport, ParagraphVersion, PromptDeployment
from core.settings import reset_settings
from core.tenancy import Identity
from tests.test_deployments import draft, engineer, manuscript, prompt_audit, prompts_dir, stored_versions

__all__ = ["engineer", "manuscript", "prompts_dir"]  # fixtures shared with test_deployments


@pytest.fixture
def few_paragraphs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pass rates are compared from one paragraph per arm (the default asks for 20)."""
    monkeypatch.setenv("WORKBENCH_CANARY_MIN_PARAGRAPHS", "1")
    reset_settings()
    yield
    monkeypatch.delenv("WORKBENCH_CANARY_MIN_PARAGRAPHS")
    reset_settings()


def start_writer_canary(clean_db: Engine, session: Session, engineer: Identity, share: float) -> PromptDeployment:
    assert run_golden(clean_db, prompt_pins={"writer": "v2"}, label="writer v2").status == "passed"
    row = deployments.start_canary(
        session, by=engineer, agent="writer", version="v2", share=share, reason="one fact per sentence"
    )
    session.commit()
    found = session.get(PromptDeployment, row.id)
    assert found is not None
    return found


def paragraph_in(
    session: Session, identity: Identity, manuscript: int, trial: PromptDeployment, *, canary: bool
) -> int:
    """A new paragraph that the canary serves (or not)."""
    for _ in range(200):
        paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[0])
        session.commit()
        share = trial.canary_share or 0.0
        if deployments.in_canary(deployment_id=trial.id, paragraph_id=paragraph.id, share=share) == canary:
            return paragraph.id
    raise AssertionError("no paragraph fell on the wanted side in 200 tries")


# -- the share ------------------------------------------------------------------------------------


def test_the_canary_share_is_deterministic_and_close_to_the_share() -> None:
    ids = range(1, 20_001)
    chosen = [p for p in ids if deployments.in_canary(deployment_id=7, paragraph_id=p, share=0.2)]
    assert 0.18 < len(chosen) / len(ids) < 0.22
    assert chosen == [p for p in ids if deployments.in_canary(deployment_id=7, paragraph_id=p, share=0.2)]
    other = {p for p in ids if deployments.in_canary(deployment_id=8, paragraph_id=p, share=0.2)}
    assert other != set(chosen)  # each canary draws its own paragraphs
    assert all(deployments.in_canary(deployment_id=7, paragraph_id=p, share=1.0) for p in range(1, 500))


def test_pins_follow_the_canary_for_its_paragraphs_only(
    clean_db: Engine, session: Session, identity: Identity, engineer: Identity, prompts_dir: Path
) -> None:
    trial = start_writer_canary(clean_db, session, engineer, share=0.5)
    inside = [p for p in range(1, 400) if deployments.in_canary(deployment_id=trial.id, paragraph_id=p, share=0.5)]
    outside = [p for p in range(1, 400) if p not in inside]
    assert {deployments.pins_for(session, paragraph_id=p)["writer"] for p in inside} == {"v2"}
    assert {deployments.pins_for(session, paragraph_id=p)["writer"] for p in outside} == {"v1"}
    assert deployments.pins_for(session, paragraph_id=None)["writer"] == "v1"
    assert deployments.pins_for(session, paragraph_id=inside[0])["verifier"] == "v1"

    with pytest.raises(DeploymentError, match="already has a canary"):
        deployments.start_canary(session, by=engineer, agent="writer", version="v2", share=0.1)
    with pytest.raises(DeploymentError, match="has a canary"):
        deployments.activate(session, by=engineer, agent="writer", version="v2")
    with pytest.raises(DeploymentError, match="above 0 and at most 1"):
        deployments.start_canary(session, by=engineer, agent="verifier", version="v1", share=1.5)


# -- the verdict ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "baseline", "verdict"),
    [
        (ArmFigures("v2", 1, 1, false_supports=1), ArmFigures("v1", 0, 0), ROLLBACK),
        (ArmFigures("v2", 19, 19), ArmFigures("v1", 40, 40), WATCHING),
        (ArmFigures("v2", 20, 14), ArmFigures("v1", 20, 18), ROLLBACK),  # 70% vs 90%: beyond a 10% margin
        (ArmFigures("v2", 20, 17), ArmFigures("v1", 20, 18), PROMOTE),  # 85% vs 90%: within it
        (ArmFigures("v2", 20, 20), ArmFigures("v1", 20, 10), PROMOTE),
    ],
)
def test_the_verdict_follows_the_figures(canary: ArmFigures, baseline: ArmFigures, verdict: str) -> None:
    got, reason = judge(canary, baseline, min_paragraphs=20, margin=0.1)
    assert got == verdict
    assert reason


# -- Must show 3 ------------------------------------------------------------------------------------


def test_a_canary_with_a_false_support_is_rolled_back_automatically_and_the_baseline_serves_again(
    clean_db: Engine,
    session: Session,
    identity: Identity,
    engineer: Identity,
    manuscript: int,
    prompts_dir: Path,
) -> None:
    trial = start_writer_canary(clean_db, session, engineer, share=0.5)
    on_canary = paragraph_in(session, identity, manuscript, trial, canary=True)
    on_baseline = paragraph_in(session, identity, manuscript, trial, canary=False)
    drafted = draft(session, identity, manuscript, paragraph_id=on_canary)
    baseline = draft(session, identity, manuscript, paragraph_id=on_baseline)
    assert drafted.prompt_versions["writer"] == "v2" and baseline.prompt_versions["writer"] == "v1"

    report = deployments.canary_report(session, agent="writer")
    assert (report.canary.paragraphs, report.baseline.paragraphs) == (1, 1)
    assert report.verdict == WATCHING and report.canary.false_supports == 0
    assert report.canary.latency_p50_ms is not None and report.canary.cost_per_paragraph == 0.0

    # A false support on a baseline paragraph says nothing against the canary.
    supported = [s for s in baseline.sentences if s.verdict == "supported"]
    report_false_support(
        session, tenant_id=identity.tenant_id, user_id=identity.user_id, sentence_check_id=supported[0].id
    )
    session.commit()
    assert deployments.canary_report(session, agent="writer").baseline.false_supports == 1
    assert [a.canary_version for a in deployments.status(session) if a.agent == "writer"] == ["v2"]

    before = stored_versions(session, identity.tenant_id)
    wrong = next(s for s in drafted.sentences if s.verdict == "supported")
    report_false_support(
        session,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        sentence_check_id=wrong.id,
        note="the source says this only for one site",
    )
    session.commit()

    # Rolled back at once, by the workbench, in the report's own transaction.
    writer = next(a for a in deployments.status(session) if a.agent == "writer")
    assert writer.canary is None and writer.active_version == "v1"
    ended = session.get(PromptDeployment, trial.id)
    assert ended is not None and ended.status == "rolled_back" and ended.ended_at is not None
    assert ended.ended_reason.startswith("automatic rollback: 1 false support(s)")
    assert deployments.pins_for(session, paragraph_id=on_canary)["writer"] == "v1"

    # The baseline serves the canary's paragraph again.
    again = draft(session, identity, manuscript, paragraph_id=on_canary)
    assert again.prompt_versions["writer"] == "v1" and again.number == drafted.number + 1

    # Earlier versions and their verdicts are exactly as they were.
    after = stored_versions(session, identity.tenant_id)
    assert {key: after[key] for key in before} == before

    # The audit log shows who rolled it back and why, with the figures that decided.
    entry = prompt_audit(session)[-1]
    assert entry.actor == "workbench" and entry.actor_user_id is None
    assert entry.subject == "writer v2" and entry.details["action"] == "rollback_canary"
    figures = entry.details["report"]
    assert figures["verdict"] == ROLLBACK and "false support" in figures["reason"]
    assert figures["canary"]["false_supports"] == 1 and figures["canary"]["paragraphs"] == 1
    assert figures["baseline"]["version"] == "v1" and figures["baseline"]["paragraphs"] == 1
    assert audit.verify(session.connection()).intact
    assert [e.details["action"] for e in prompt_audit(session)] == ["canary", "rollback_canary"]


# -- pass rate, scheduled evaluation, promotion ---------------------------------------------------


def add_version(session: Session, identity: Identity, manuscript: int, *, writer: str, verified: bool) -> None:
    """A paragraph version as the pipeline stores it (immutable once written), drafted by ``writer``."""
    paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript, brief=DEMO_BRIEFS[1])
    session.add(
        ParagraphVersion(
            tenant_id=identity.tenant_id,
            paragraph_id=paragraph.id,
            number=1,
            text="A sentence.",
            status="verified" if verified else "needs_review",
            origin="drafted",
            trace_id=f"t-{paragraph.id}",
            prompt_versions={"writer": writer, "verifier": "v1"},
            provider="local",
        )
    )
    session.commit()


def test_a_pass_rate_below_the_baseline_rolls_the_canary_back_on_the_alert_schedule(
    clean_db: Engine,
    session: Session,
    identity: Identity,
    engineer: Identity,
    manuscript: int,
    prompts_dir: Path,
    few_paragraphs: None,
) -> None:
    trial = start_writer_canary(clean_db, session, engineer, share=0.2)
    for _ in range(3):
        add_version(session, identity, manuscript, writer="v2", verified=False)
        add_version(session, identity, manuscript, writer="v1", verified=True)
    add_version(session, identity, manuscript, writer="v2", verified=True)  # canary 1 of 4, baseline 3 of 3

    assert AlertSchedule(clean_db, interval_s=60).tick()
    session.expire_all()
    ended = session.get(PromptDeployment, trial.id)
    assert ended is not None and ended.status == "rolled_back"
    entry = prompt_audit(session)[-1]
    assert entry.actor == "workbench" and entry.details["action"] == "rollback_canary"
    assert entry.details["report"]["canary"]["pass_rate"] == 0.25
    assert entry.details["report"]["baseline"]["pass_rate"] == 1.0
    assert "below the baseline by more than the margin of 10%" in entry.details["reason"]
    assert deployments.evaluate_canaries(clean_db) == []  # nothing left to judge


def test_a_canary_that_earned_it_is_reported_ready_and_a_person_promotes_it(
    clean_db: Engine,
    session: Session,
    identity: Identity,
    engineer: Identity,
    manuscript: int,
    prompts_dir: Path,
    few_paragraphs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trial = start_writer_canary(clean_db, session, engineer, share=0.5)
    draft(session, identity, manuscript, paragraph_id=paragraph_in(session, identity, manuscript, trial, canary=True))
    draft(session, identity, manuscript, paragraph_id=paragraph_in(session, identity, manuscript, trial, canary=False))

    assert cli.main(["prompts", "evaluate"]) == 0
    out = capsys.readouterr().out
    assert "writer v2: ready to promote" in out
    (decision,) = deployments.evaluate_canaries(clean_db)
    assert decision.action == "ready_to_promote" and decision.report.verdict == PROMOTE
    session.expire_all()
    assert session.get(PromptDeployment, trial.id).status == "canary"  # type: ignore[union-attr]  # never on its own

    assert cli.main(["prompts", "report", "writer"]) == 0
    assert "verdict: promote" in capsys.readouterr().out
    assert cli.main(["prompts", "promote", "writer", "--actor", "Ana"]) == 0
    assert "writer v2 is active (promoted)" in capsys.readouterr().out
    session.expire_all()
    assert deployments.active_versions(session)["writer"] == "v2"
    rows = session.scalars(select(PromptDeployment).order_by(PromptDeployment.id)).all()
    assert [(r.version, r.status, r.canary_share is not None) for r in rows] == [
        ("v2", "retired", True),
        ("v2", "active", False),
    ]
    entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None and entry.details["action"] == "promote" and entry.actor.startswith("Ana (cli:")
    assert entry.details["report"]["verdict"] == PROMOTE
    with pytest.raises(DeploymentError, match="has no canary"):
        deployments.promote(session, by=engineer, agent="writer")


def test_a_canary_with_a_false_support_cannot_be_promoted_and_retire_ends_one_without_judging(
    clean_db: Engine,
    session: Session,
    identity: Identity,
    engineer: Identity,
    manuscript: int,
    prompts_dir: Path,
) -> None:
    trial = start_writer_canary(clean_db, session, engineer, share=1.0)
    drafted = draft(session, identity, manuscript)
    assert drafted.prompt_versions["writer"] == "v2"
    report = deployments.canary_report(session, agent="writer")
    assert report.verdict == WATCHING
    retired = deployments.retire(session, by=engineer, agent="writer", reason="trial over")
    session.commit()
    assert retired.status == "retired" and retired.ended_reason == "trial over" and retired.id == trial.id
    assert deployments.pins_for(session, paragraph_id=drafted.paragraph_id)["writer"] == "v1"

    again = deployments.start_canary(session, by=engineer, agent="writer", version="v2", share=1.0)
    session.commit()
    second = draft(session, identity, manuscript)
    sentence = next(s for s in second.sentences if s.verdict == "supported")
    # Filed as a golden run files one (source "golden"), not through report_false_support: the
    # immediate rollback does not run, so promote itself must refuse.
    session.add(
        FalseSupportReport(
            tenant_id=identity.tenant_id,
            sentence_check_id=sentence.id,
            paragraph_id=second.paragraph_id,
            trace_id=second.trace_id,
            source="golden",
        )
    )
    session.commit()
    with pytest.raises(DeploymentError, match="may not be promoted: 1 false support"):
        deployments.promote(session, by=engineer, agent="writer")
    session.rollback()
    assert session.get(PromptDeployment, again.id).status == "canary"  # type: ignore[union-attr]
