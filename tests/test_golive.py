"""The go-live criteria with live status, as ops read them on the Runbook page: each criterion passes
on data that meets it and fails, naming what to do, on data that does not. Rows are written into the
real tables the product fills (drills, release checks, usage events, reports); golden runs are real
runs of the local provider; real database (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core import alerts, db, deployments, executors, golive, prompts
from core.golden_runner import run_golden
from core.manuscripts import add_paragraph, create_manuscript
from core.models import (
    Drill,
    FalseSupportReport,
    LlmUsageEvent,
    ParagraphVersion,
    ReleaseCheck,
    SentenceCheck,
    utcnow,
)
from core.settings import PROJECT_ROOT, get_settings, reset_settings
from core.tenancy import Identity, bootstrap, create_tenant
from core.ui import md_escape
from tests.ui_helpers import MakeApp

PAGE = "pages/runbook.py"


@pytest.fixture(autouse=True)
def _no_background_evaluations() -> Iterator[None]:
    executors.reset_executors()
    yield
    executors.reset_executors()


@pytest.fixture
def candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A v2 of every agent (the shipped v1 plus one sentence), locked, in a prompts directory of its own:
    the shipped default cannot be activated over itself, so pinning means deploying a version."""
    target = tmp_path / "prompts"
    for agent in prompts.AGENTS:
        (target / agent).mkdir(parents=True)
        shipped = PROJECT_ROOT / "prompts" / agent / "v1.md"
        shutil.copy(shipped, target / agent / "v1.md")
        text = shipped.read_text().replace("version: v1", "version: v2")
        (target / agent / "v2.md").write_text(text + "Keep to the facts given.\n")
    prompts.lock_new_versions(target)
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(target))
    reset_settings()
    yield {agent: "v2" for agent in prompts.AGENTS}
    monkeypatch.delenv("WORKBENCH_PROMPTS_DIR")
    reset_settings()


def pin_all(engine: Engine, admin: Identity, pins: dict[str, str]) -> int:
    """A passing golden run of ``pins``, then each activated through the release gate; the run's id."""
    run = run_golden(engine, prompt_pins=pins, label="go-live")
    assert run.status == "passed", run.failing_cases
    with db.session_scope(engine) as s:
        for agent, version in pins.items():
            deployments.activate(s, by=admin, agent=agent, version=version, reason="pin for go-live")
    return run.id


@pytest.fixture
def admin(clean_db: Engine) -> Identity:
    with db.session_scope(clean_db) as s:
        return replace(bootstrap(s), role="admin", name="Admin")


def criteria(engine: Engine, viewer: Identity) -> dict[str, golive.Criterion]:
    with db.session_scope(engine) as s:
        return {c.key: c for c in golive.status(s, viewer=viewer)}


def drill(engine: Engine, *, days_ago: float, passed: bool = True) -> None:
    at = utcnow() - timedelta(days=days_ago)
    with db.session_scope(engine) as s:
        s.add(
            Drill(
                kind="kill-switch", started_at=at, finished_at=at + timedelta(seconds=3), passed=passed, actor="cli:sre"
            )
        )


def run_cost(s: Session, tenant_id: int, cost: float, *, days_ago: float = 1, calls: int = 2) -> None:
    """One paragraph run (a trace) of ``calls`` priced calls costing ``cost`` in all."""
    trace = uuid.uuid4().hex
    for _ in range(calls):
        s.add(
            LlmUsageEvent(
                tenant_id=tenant_id,
                trace_id=trace,
                paragraph_id=1,
                agent="writer",
                provider="openai",
                model="gpt-4.1-mini",
                prompt_version="v1",
                input_hash="h",
                cost_usd=cost / calls,
                created_at=utcnow() - timedelta(days=days_ago),
            )
        )


def page_text(at: AppTest) -> str:
    return "\n".join([*(e.value for e in at.markdown), *(e.value for e in at.caption), *(e.value for e in at.code)])


def verdict(at: AppTest, title: str) -> str:
    """What the page says of one criterion: "pass" or "FAIL"."""
    lines = [m.value for m in at.markdown if m.value.startswith(f"**{md_escape(title)}** ")]
    assert len(lines) == 1, lines
    return "pass" if ":green-badge[" in lines[0] and "pass]" in lines[0] else "FAIL" if "FAIL]" in lines[0] else "?"


# Kill switch tested ----------------------------------------------------------------------------------


def test_without_a_drill_kill_switch_tested_fails_and_names_the_command(
    make_app: MakeApp, clean_db: Engine, admin: Identity
) -> None:
    found = criteria(clean_db, admin)["kill_switch_tested"]
    assert not found.passed and "python -m core drill kill-switch" in found.action
    assert found.commands == ("python -m core drill kill-switch",)
    at = make_app(PAGE)
    assert verdict(at, "Kill switch tested") == "FAIL"
    assert "python -m core drill kill-switch" in page_text(at)
    links = {p.proto.query_string for p in at.get("page_link")}
    assert "procedure=kill-switch-drill" in links, "the failing criterion links to its procedure"


def test_a_passing_drill_passes_and_shows_its_date(make_app: MakeApp, clean_db: Engine, admin: Identity) -> None:
    drill(clean_db, days_ago=2)
    drill(clean_db, days_ago=0.5, passed=False)  # a newer failing drill proves nothing either way
    found = criteria(clean_db, admin)["kill_switch_tested"]
    day = f"{utcnow() - timedelta(days=2):%Y-%m-%d}"
    assert found.passed and day in found.evidence[0] and "cli:sre" in found.evidence[0]
    at = make_app(PAGE)
    assert verdict(at, "Kill switch tested") == "pass"
    assert md_escape(day) in page_text(at)


def test_an_expired_drill_fails(clean_db: Engine, admin: Identity) -> None:
    drill(clean_db, days_ago=get_settings().drill_max_age_days + 1)
    found = criteria(clean_db, admin)["kill_switch_tested"]
    assert not found.passed
    assert f"older than {get_settings().drill_max_age_days:g} days" in found.action
    assert "python -m core drill kill-switch" in found.action


# Cost per paragraph bounded -------------------------------------------------------------------------


def test_cost_bounded_passes_under_the_cap_and_shows_max_and_p95(clean_db: Engine, admin: Identity) -> None:
    cap = get_settings().breaker_paragraph_cost_usd
    with db.session_scope(clean_db) as s:
        for i in range(1, 21):  # 20 runs: 0.04, 0.08, ... 0.80 of the cap; P95 by nearest rank is the 19th
            run_cost(s, admin.tenant_id, cap * 0.04 * i)
        run_cost(s, admin.tenant_id, cap * 5, days_ago=8)  # outside the 7-day window
    found = criteria(clean_db, admin)["cost_bounded"]
    assert found.passed, found.evidence
    figures = next(line for line in found.evidence if line.startswith("last 7 days"))
    assert "20 priced paragraph run(s)" in figures
    assert f"max {alerts.usd(cap * 0.8)}" in figures and f"P95 {alerts.usd(cap * 0.76)}" in figures
    assert alerts.usd(cap) in found.evidence[-2] or any(alerts.usd(cap) in line for line in found.evidence)


def test_cost_bounded_fails_with_a_run_over_the_cap(make_app: MakeApp, clean_db: Engine, admin: Identity) -> None:
    cap = get_settings().breaker_paragraph_cost_usd
    with db.session_scope(clean_db) as s:
        run_cost(s, admin.tenant_id, cap * 0.5)
        run_cost(s, admin.tenant_id, cap * 1.5)
    found = criteria(clean_db, admin)["cost_bounded"]
    assert not found.passed
    assert f"a paragraph run cost {alerts.usd(cap * 1.5)}, over the {alerts.usd(cap)} cap" in found.action
    at = make_app(PAGE)
    assert verdict(at, "Cost per paragraph bounded") == "FAIL"
    assert md_escape(alerts.usd(cap * 1.5)) in page_text(at)


def test_cost_figures_stay_in_the_viewers_workspace_unless_admin(clean_db: Engine, admin: Identity) -> None:
    cap = get_settings().breaker_paragraph_cost_usd
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="beta", name="Beta lab")
        run_cost(s, admin.tenant_id, cap * 3)  # the default workspace's dear run
        run_cost(s, other.tenant_id, cap * 0.1)
    beta_ops = replace(other, role="ops", name="Beta ops")
    assert criteria(clean_db, beta_ops)["cost_bounded"].passed, "beta's ops do not see the default workspace"
    assert not criteria(clean_db, admin)["cost_bounded"].passed, "admins see every workspace"
    assert not criteria(clean_db, replace(admin, role="ops"))["cost_bounded"].passed


# Verification gates enforced ------------------------------------------------------------------------


def test_gates_pass_with_every_agent_activated_and_fail_with_an_unpinned_one(
    make_app: MakeApp, clean_db: Engine, admin: Identity, candidates: dict[str, str]
) -> None:
    found = criteria(clean_db, admin)["verification_gates"]
    assert not found.passed
    assert "writer serves v1 without a deployment (unpinned)" in found.action
    assert "python -m core golden run --prompt writer=v1" in found.commands

    run_id = pin_all(clean_db, admin, candidates)
    found = criteria(clean_db, admin)["verification_gates"]
    assert found.passed, found.evidence
    assert f"writer v2: active, passed golden run #{run_id}" in found.evidence
    at = make_app(PAGE)
    assert verdict(at, "Verification gates enforced") == "pass"
    assert md_escape(f"writer v2: active, passed golden run #{run_id}") in page_text(at)

    with db.session_scope(clean_db) as s:  # the writer's deployment ends: the shipped default serves, unpinned
        s.execute(
            update(deployments._D)
            .where(deployments._D.c.agent == "writer", deployments._D.c.ended_at.is_(None))
            .values(status=deployments.RETIRED, ended_at=utcnow(), ended_reason="test")
        )
    found = criteria(clean_db, admin)["verification_gates"]
    assert not found.passed and "writer serves v1 without a deployment (unpinned)" in found.evidence
    assert "librarian v2: active" in " ".join(found.evidence), "the pinned agents still show their evidence"


def test_gates_fail_on_a_verified_version_with_an_unsupported_sentence_or_a_recent_report(
    clean_db: Engine, admin: Identity, candidates: dict[str, str]
) -> None:
    pin_all(clean_db, admin, candidates)
    with db.session_scope(clean_db) as s:
        manuscript = create_manuscript(s, tenant_id=admin.tenant_id, title="M", user_id=admin.user_id)
        pid = add_paragraph(s, tenant_id=admin.tenant_id, manuscript_id=manuscript.id, brief="b").id
        version = ParagraphVersion(
            tenant_id=admin.tenant_id,
            paragraph_id=pid,
            number=1,
            text="t",
            status="verified",
            origin="drafted",
            provider="local",
        )
        s.add(version)
        s.flush()
        sentence = SentenceCheck(
            tenant_id=admin.tenant_id, version_id=version.id, ordinal=0, text="t", verdict="supported"
        )
        s.add(sentence)
        s.flush()
        mine = SentenceCheck.id == sentence.id
        s.add(FalseSupportReport(tenant_id=admin.tenant_id, note="old", created_at=utcnow() - timedelta(days=31)))
    assert criteria(clean_db, admin)["verification_gates"].passed, "a report older than 30 days has aged out"

    with db.session_scope(clean_db) as s:
        s.execute(update(SentenceCheck).where(mine).values(verdict="unsupported"))
    found = criteria(clean_db, admin)["verification_gates"]
    assert not found.passed and "1 paragraph version(s) marked verified hold an unsupported sentence" in found.action

    with db.session_scope(clean_db) as s:
        s.execute(update(SentenceCheck).where(mine).values(verdict="supported"))
        s.add(FalseSupportReport(tenant_id=admin.tenant_id, note="new", created_at=utcnow() - timedelta(days=29)))
    found = criteria(clean_db, admin)["verification_gates"]
    assert not found.passed and "1 false support report(s) in the last 30 days" in found.action


# Dashboards present and release check passed -------------------------------------------------------


def test_dashboards_pass_by_default_and_fail_with_an_alert_rule_off(clean_db: Engine, admin: Identity) -> None:
    found = criteria(clean_db, admin)["dashboards_present"]
    assert found.passed, found.evidence
    assert "pages/costs.py, pages/trajectories.py, pages/operations.py" in found.evidence[0]
    with db.session_scope(clean_db) as s:
        alerts.update_rule(
            s, tenant_id=admin.tenant_id, rule="job_failure_rate", enabled=False, threshold=0.05, actor=admin
        )
    found = criteria(clean_db, admin)["dashboards_present"]
    assert not found.passed and f"alert rule off in default: {alerts.RULES['job_failure_rate'].title}" in found.action


def test_release_check_shows_the_newest_with_time_and_environment(
    make_app: MakeApp, clean_db: Engine, admin: Identity
) -> None:
    found = criteria(clean_db, admin)["release_check_passed"]
    assert not found.passed and found.commands == ("python -m core release check",)
    with db.session_scope(clean_db) as s:
        s.add(ReleaseCheck(at=utcnow() - timedelta(hours=2), environment="staging", passed=True, actor="cli:sre"))
    found = criteria(clean_db, admin)["release_check_passed"]
    assert found.passed and "in staging by cli:sre: passed" in found.evidence[0]
    with db.session_scope(clean_db) as s:
        s.add(
            ReleaseCheck(
                at=utcnow(),
                environment="production",
                passed=False,
                actor="cli:sre",
                results=[
                    {"item": "migrations applied", "passed": True, "reason": ""},
                    {"item": "secrets verified", "passed": False, "reason": "dev key"},
                ],
            )
        )
    found = criteria(clean_db, admin)["release_check_passed"]
    assert not found.passed and "secrets verified" in found.action and "migrations" not in found.action
    at = make_app(PAGE)
    assert verdict(at, "Release check passed") == "FAIL"
    assert md_escape("production") in page_text(at)


def test_judging_is_pure_over_a_snapshot(clean_db: Engine, admin: Identity) -> None:
    with db.session_scope(clean_db) as s:
        snap = golive.snapshot(s, viewer=admin)
    assert [c.key for c in golive.judge(snap)] == list(golive.CRITERIA)
    later = replace(snap, now=snap.now + timedelta(days=400), drill=golive.DrillRecord(snap.now, None, ""))
    assert not {c.key: c for c in golive.judge(later)}["kill_switch_tested"].passed
    assert {c.key: c for c in golive.judge(replace(later, now=snap.now))}["kill_switch_tested"].passed
    unbounded = replace(snap, cap_usd=0.0, token_budgets={"writer": 0})
    cost = {c.key: c for c in golive.judge(unbounded)}["cost_bounded"]
    assert not cost.passed and "BREAKER_PARAGRAPH_COST_USD" in cost.action and "writer" in cost.action
