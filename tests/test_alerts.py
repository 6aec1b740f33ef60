"""Alert rules, SLOs and false support reports, as ops and researchers meet them.

Each rule fires on data built to cross its threshold (an ``AlertEvent`` firing, with the value)
and stays quiet on data just on the safe side; events resolve when the data comes back, never
double under concurrent evaluations, and stay inside their tenant. Data is written straight into
the real tables the product fills (versions, usage events, jobs, reports), against the real test
database (SQLite, or PostgreSQL with TEST_DATABASE_URL).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import alerts, cli, db, executors, slo, ui
from core.alerts import AlertSchedule
from core.errors import AlertRuleError, FalseSupportError, NotFoundError
from core.false_supports import report_false_support, reportable_sentences
from core.manuscripts import add_paragraph, create_manuscript
from core.models import (
    AlertEvent,
    FalseSupportReport,
    Job,
    LlmUsageEvent,
    LoginThrottle,
    ParagraphVersion,
    SentenceCheck,
    utcnow,
)
from core.tenancy import Identity, bootstrap, create_tenant
from tests.ui_helpers import MakeApp, role_user, seed_drafted


def ops(ident: Identity) -> Identity:
    """An ops user of ``ident``'s tenant: the role that may change alert rules."""
    return replace(ident, role="ops", name="ops")


NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
"""Every core test evaluates at this moment (mid-month, so the budget's month is unambiguous)."""


@pytest.fixture(autouse=True)
def _no_background_evaluations() -> Iterator[None]:
    # An in-process executor left by an earlier test evaluates every tenant on its own clock
    # (now, not NOW) and would resolve what these tests opened.
    executors.reset_executors()
    yield
    executors.reset_executors()


# Data builders: rows as the pipeline, the gateway and the job runner write them ----------------


def paragraph(s: Session, ident: Identity) -> int:
    manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="Alerts", user_id=ident.user_id)
    return add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief="brief").id


def versions(s: Session, ident: Identity, *, verified: int, review: int, at: datetime = NOW) -> None:
    pid = paragraph(s, ident)
    for number, status in enumerate(["verified"] * verified + ["needs_review"] * review, start=1):
        s.add(
            ParagraphVersion(
                tenant_id=ident.tenant_id,
                paragraph_id=pid,
                number=number,
                text="text",
                status=status,
                origin="drafted",
                trace_id=uuid.uuid4().hex,
                provider="local",
                created_at=at - timedelta(minutes=number),
            )
        )
    s.flush()


def usage(
    s: Session,
    ident: Identity,
    cost: float | None,
    *,
    at: datetime = NOW,
    paragraph_id: int | None = 1,
    trace: str = "",
) -> None:
    s.add(
        LlmUsageEvent(
            tenant_id=ident.tenant_id,
            trace_id=trace or uuid.uuid4().hex,
            paragraph_id=paragraph_id,
            agent="writer",
            provider="openai",
            model="gpt-4.1-mini",
            prompt_version="v1",
            input_hash="h",
            cost_usd=cost,
            created_at=at,
        )
    )
    s.flush()


def job(
    s: Session,
    ident: Identity,
    state: str,
    *,
    kind: str = "ingest",
    trace: str = "",
    created: datetime = NOW - timedelta(minutes=5),
    finished: datetime | None = NOW - timedelta(minutes=1),
) -> None:
    s.add(
        Job(
            id=str(uuid.uuid4()),
            tenant_id=ident.tenant_id,
            kind=kind,
            queue="facts",
            state=state,
            trace_id=trace or uuid.uuid4().hex,
            created_at=created,
            finished_at=finished,
        )
    )
    s.flush()


def reports(s: Session, ident: Identity, n: int, *, at: datetime = NOW) -> None:
    s.add_all(FalseSupportReport(tenant_id=ident.tenant_id, note="wrong", created_at=at) for _ in range(n))
    s.flush()


def jobs_ended(s: Session, ident: Identity, *, failed: int, succeeded: int) -> None:
    for state in ["FAILED"] * failed + ["SUCCEEDED"] * succeeded:
        job(s, ident, state)


Builder = Callable[[Session, Identity, bool], None]


def build_pass_rate(s: Session, ident: Identity, cross: bool) -> None:
    versions(s, ident, verified=18 if cross else 19, review=2 if cross else 1)  # 90 % / exactly 95 %


def build_false_support(s: Session, ident: Identity, cross: bool) -> None:
    reports(s, ident, 1, at=NOW - timedelta(hours=1 if cross else 25))  # the old one is out of the window


def build_cost_per_paragraph(s: Session, ident: Identity, cross: bool) -> None:
    usage(s, ident, 0.50)
    usage(s, ident, 0.52 if cross else 0.50)  # average $0.51 / exactly $0.50
    usage(s, ident, 25.0, paragraph_id=None)  # ingestion: not a paragraph run
    usage(s, ident, None)  # unpriced: adds nothing, and is no run


def build_weekly_spike(s: Session, ident: Identity, cross: bool) -> None:
    usage(s, ident, 10.0, at=NOW - timedelta(days=10))
    usage(s, ident, 13.10 if cross else 13.0, at=NOW - timedelta(days=2))  # +31 % / exactly +30 %


def build_job_failures(s: Session, ident: Identity, cross: bool) -> None:
    jobs_ended(s, ident, failed=2 if cross else 1, succeeded=18 if cross else 19)  # 10 % / exactly 5 %
    job(s, ident, "CANCELLED")  # cancelled by someone: not a failure, not in the count
    job(s, ident, "FAILED", finished=NOW - timedelta(hours=2))  # out of the hour


def build_budget(s: Session, ident: Identity, cross: bool) -> None:
    alerts.update_rule(
        s,
        tenant_id=ident.tenant_id,
        rule="budget",
        enabled=True,
        threshold=0.8,
        params={"monthly_budget_usd": 100.0},
        actor=ops(ident),
    )
    usage(s, ident, 500.0, at=datetime(2026, 2, 27, tzinfo=UTC))  # last month
    usage(s, ident, 80.0 if cross else 79.99, at=datetime(2026, 3, 2, tzinfo=UTC))


CASES: list[tuple[str, Builder, float]] = [
    ("verification_pass_rate", build_pass_rate, 0.90),
    ("false_support", build_false_support, 1.0),
    ("cost_per_paragraph", build_cost_per_paragraph, 0.51),
    ("weekly_cost_spike", build_weekly_spike, 0.31),
    ("job_failure_rate", build_job_failures, 0.10),
    ("budget", build_budget, 0.80),
]


def events(engine: Engine, tenant_id: int, rule: str | None = None) -> list[AlertEvent]:
    with db.session_scope(engine) as s:
        query = select(AlertEvent).where(AlertEvent.tenant_id == tenant_id).order_by(AlertEvent.id)
        if rule:
            query = query.where(AlertEvent.rule == rule)
        return list(s.scalars(query))


def result(results: list[alerts.RuleResult], rule: str) -> alerts.RuleResult:
    return next(r for r in results if r.rule == rule)


# Each rule fires on crossing data and stays quiet below ----------------------------------------


@pytest.mark.parametrize(("rule", "build", "value"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_fires_on_data_that_crosses_it(
    clean_db: Engine, session: Session, identity: Identity, rule: str, build: Builder, value: float
) -> None:
    build(session, identity, True)
    session.commit()
    results = alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW)
    assert result(results, rule).firing
    assert [r.rule for r in results if r.firing] == [rule], "only the rule the data was built for"
    [event] = events(clean_db, identity.tenant_id)
    assert (event.rule, event.state, event.severity) == (rule, "firing", alerts.RULES[rule].severity)
    assert event.value == pytest.approx(value)
    assert event.message.startswith(alerts.RULES[rule].title)
    with db.session_scope(clean_db) as s:
        assert [e.rule for e in alerts.active_alerts(s, tenant_id=identity.tenant_id)] == [rule]


@pytest.mark.parametrize(("rule", "build", "value"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_stays_quiet_just_below(
    clean_db: Engine, session: Session, identity: Identity, rule: str, build: Builder, value: float
) -> None:
    build(session, identity, False)
    session.commit()
    results = alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW)
    assert not any(r.firing for r in results), [r.message for r in results if r.firing]
    assert result(results, rule).value is not None, "judged, and quiet"
    assert events(clean_db, identity.tenant_id) == []


def test_minimum_samples_keep_one_bad_paragraph_or_job_quiet(session: Session, identity: Identity) -> None:
    versions(session, identity, verified=0, review=9)  # 0 % of 9: under the 10 needed
    jobs_ended(session, identity, failed=9, succeeded=0)
    usage(session, identity, 0.5, at=NOW - timedelta(days=10))  # a previous week under $1: no baseline
    usage(session, identity, 50.0, at=NOW - timedelta(days=2))
    session.commit()
    results = alerts.evaluate(session, tenant_id=identity.tenant_id, now=NOW)
    session.commit()
    for rule in ("verification_pass_rate", "job_failure_rate", "weekly_cost_spike"):
        assert result(results, rule).value is None and not result(results, rule).firing
        assert "not judged" in result(results, rule).message
    # Lower the minimum and the same data fires.
    alerts.update_rule(
        session,
        tenant_id=identity.tenant_id,
        rule="job_failure_rate",
        enabled=True,
        threshold=0.05,
        params={"min_jobs": 5},
        actor=ops(identity),
    )
    session.commit()
    assert result(alerts.evaluate(session, tenant_id=identity.tenant_id, now=NOW), "job_failure_rate").value == 1.0


def test_budget_does_nothing_until_a_budget_is_set(session: Session, identity: Identity) -> None:
    usage(session, identity, 1_000.0, at=NOW - timedelta(days=1))
    session.commit()
    budget = result(alerts.evaluate(session, tenant_id=identity.tenant_id, now=NOW), "budget")
    assert not budget.firing and "no monthly budget set" in budget.message


# Firing, still firing, resolved, firing again --------------------------------------------------


def test_an_alert_keeps_one_event_while_firing_and_resolves_when_the_data_comes_back(
    clean_db: Engine, session: Session, identity: Identity
) -> None:
    reports(session, identity, 1, at=NOW)
    session.commit()
    alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW)
    reports(session, identity, 2, at=NOW + timedelta(hours=1))
    session.commit()
    alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW + timedelta(hours=2))
    [event] = events(clean_db, identity.tenant_id)
    assert event.state == "firing" and event.value == 3
    assert db.as_utc(event.fired_at) == NOW and db.as_utc(event.last_seen_at) == NOW + timedelta(hours=2)

    later = NOW + timedelta(hours=26)  # every report is now out of the 24 h window
    assert not result(alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=later), "false_support").firing
    [event] = events(clean_db, identity.tenant_id)
    assert event.state == "resolved" and db.as_utc(event.resolved_at) == later  # type: ignore[arg-type]
    with db.session_scope(clean_db) as s:
        assert alerts.active_alerts(s, tenant_id=identity.tenant_id) == []
        assert [e.state for e in alerts.alert_history(s, tenant_id=identity.tenant_id)] == ["resolved"]

    reports(session, identity, 1, at=later)
    session.commit()
    alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=later)
    assert [e.state for e in events(clean_db, identity.tenant_id)] == ["resolved", "firing"], "a new event"


def test_disabled_rules_never_fire_and_disabling_resolves(
    clean_db: Engine, session: Session, identity: Identity
) -> None:
    reports(session, identity, 1)
    session.commit()
    alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW)
    alerts.update_rule(
        session, tenant_id=identity.tenant_id, rule="false_support", enabled=False, threshold=0, actor=ops(identity)
    )
    session.commit()
    reports(session, identity, 5)
    session.commit()
    off = result(alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW), "false_support")
    assert not off.firing and not off.enabled
    assert [e.state for e in events(clean_db, identity.tenant_id)] == ["resolved"]


# Two evaluators at once ------------------------------------------------------------------------


def test_concurrent_evaluations_open_one_firing_event(clean_db: Engine, session: Session, identity: Identity) -> None:
    reports(session, identity, 1)
    session.commit()
    # Evaluator A has recorded its firing event but not committed; B must wait for A, then see it.
    with db.session_scope(clean_db) as first:
        alerts.evaluate(first, tenant_id=identity.tenant_id, now=NOW)
        second = threading.Thread(
            target=alerts.evaluate, args=(clean_db,), kwargs={"tenant_id": identity.tenant_id, "now": NOW}
        )
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive(), "B waits for A's transaction instead of deciding without it"
    second.join(timeout=30)
    assert not second.is_alive()
    assert [e.state for e in events(clean_db, identity.tenant_id)] == ["firing"]

    # And a burst: eight evaluators released together, several rounds, still one event.
    errors: list[BaseException] = []

    def evaluate_together(barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            alerts.evaluate(clean_db, tenant_id=identity.tenant_id, now=NOW)
        except BaseException as error:  # collected: a thread's exception would vanish otherwise
            errors.append(error)

    for _ in range(3):
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=evaluate_together, args=(barrier,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert [e.state for e in events(clean_db, identity.tenant_id)] == ["firing"]


# Tenants ---------------------------------------------------------------------------------------


def test_settings_and_data_stay_inside_their_tenant(clean_db: Engine, session: Session, identity: Identity) -> None:
    other = create_tenant(session, slug="other-lab", name="Other lab")
    for ident in (identity, other):
        usage(session, ident, 0.40)  # $0.40 per paragraph in each
    reports(session, other, 3)  # only the other lab has false supports
    alerts.update_rule(
        session,
        tenant_id=identity.tenant_id,
        rule="cost_per_paragraph",
        enabled=True,
        threshold=0.25,
        actor=ops(identity),
    )
    session.commit()

    fired = alerts.evaluate_all(clean_db, now=NOW)
    assert [r.rule for r in fired[identity.tenant_id] if r.firing] == ["cost_per_paragraph"]
    assert [r.rule for r in fired[other.tenant_id] if r.firing] == ["false_support"]
    assert result(fired[other.tenant_id], "cost_per_paragraph").threshold == 0.50, "the default, untouched"
    assert result(fired[identity.tenant_id], "false_support").value == 0, "the other lab's reports never count"
    with db.session_scope(clean_db) as s:
        mine = {r.name: r for r in alerts.rule_settings(s, tenant_id=identity.tenant_id)}
        theirs = {r.name: r for r in alerts.rule_settings(s, tenant_id=other.tenant_id)}
    assert (mine["cost_per_paragraph"].threshold, mine["cost_per_paragraph"].actor) == (0.25, "ops")
    assert theirs["cost_per_paragraph"].threshold == 0.50 and theirs["cost_per_paragraph"].updated_at is None


@pytest.mark.parametrize(
    ("rule", "threshold", "params", "says"),
    [
        ("no_such_rule", 1.0, None, "There is no alert rule 'no_such_rule'"),
        ("verification_pass_rate", 1.5, None, "between 0.0% and 100.0%; got 150.0%"),
        ("false_support", 0.5, None, "a count: give a whole number"),
        ("cost_per_paragraph", float("nan"), None, "must be a number"),
        ("job_failure_rate", 0.05, {"min_jobs": 0}, "must be at least 1"),
        ("job_failure_rate", 0.05, {"min_jobs": 2.5}, "a count: give a whole number"),
        ("budget", 0.8, {"monthly_budget_usd": -5}, "must be at least 0.01"),
        ("budget", 0.8, {"budget": 100}, "has no parameter 'budget' (its parameters: monthly_budget_usd)"),
        ("weekly_cost_spike", 0.3, {"min_previous_usd": None}, "cannot be empty"),
    ],
)
def test_rule_settings_are_validated_with_clear_errors(
    session: Session, identity: Identity, rule: str, threshold: float, params: dict[str, Any] | None, says: str
) -> None:
    with pytest.raises(AlertRuleError) as raised:
        alerts.update_rule(
            session,
            tenant_id=identity.tenant_id,
            rule=rule,
            enabled=True,
            threshold=threshold,
            params=params,
            actor=ops(identity),
        )
    assert says in str(raised.value)
    assert all(s.updated_at is None for s in alerts.rule_settings(session, tenant_id=identity.tenant_id))


# SLOs ------------------------------------------------------------------------------------------


def paragraph_run(
    s: Session, ident: Identity, pid: int, number: int, *, seconds: float, outcome: str, end: datetime = NOW
) -> None:
    """A drafting run as the job runner leaves it: a draft job then a verify_draft job in one trace,
    and (when it got that far) the drafted version."""
    trace = uuid.uuid4().hex
    start = end - timedelta(seconds=seconds)
    if outcome == "draft failed":
        job(s, ident, "FAILED", kind="draft", trace=trace, created=start, finished=end)
        return
    job(s, ident, "SUCCEEDED", kind="draft", trace=trace, created=start, finished=start + timedelta(seconds=1))
    if outcome == "running":
        job(s, ident, "RUNNING", kind="verify_draft", trace=trace, created=start, finished=None)
        return
    job(s, ident, "SUCCEEDED", kind="verify_draft", trace=trace, created=start + timedelta(seconds=1), finished=end)
    s.add(
        ParagraphVersion(
            tenant_id=ident.tenant_id,
            paragraph_id=pid,
            number=number,
            text="t",
            status=outcome,
            origin="drafted",
            trace_id=trace,
            provider="local",
            created_at=end,
        )
    )
    s.flush()


def test_slos_on_known_data(session: Session, identity: Identity) -> None:
    pid = paragraph(session, identity)
    for number, seconds in enumerate((10, 20, 30), start=1):
        paragraph_run(session, identity, pid, number, seconds=seconds, outcome="verified")
    paragraph_run(session, identity, pid, 4, seconds=100, outcome="needs_review")
    paragraph_run(session, identity, pid, 5, seconds=5, outcome="draft failed")
    paragraph_run(session, identity, pid, 6, seconds=500, outcome="running")  # not ended: not counted
    paragraph_run(session, identity, pid, 7, seconds=40, outcome="verified", end=NOW - timedelta(days=8))  # too old
    reports(session, identity, 1, at=NOW - timedelta(days=3))
    session.commit()

    success, false_supports, latency = slo.slo_status(session, tenant_id=identity.tenant_id, now=NOW)
    assert success.value == pytest.approx(3 / 5) and success.met is False and success.verdict == "not met"
    assert success.detail == "3 verified of 5 paragraph runs that ended (1 failed)"
    assert (false_supports.value, false_supports.met, false_supports.target) == (1, False, 0)
    # Four runs ended with a version: 10, 20, 30 and 100 s; the nearest-rank P95 of four is the 4th.
    assert latency.value == pytest.approx(100, abs=0.01) and latency.met is False
    assert latency.target == 60 and latency.shown == "100.0 s"


def test_p95_latency_is_the_nearest_rank_and_met_under_the_target(session: Session, identity: Identity) -> None:
    pid = paragraph(session, identity)
    for seconds in range(1, 21):  # 1 s .. 20 s: the 95th percentile by nearest rank is the 19th
        paragraph_run(session, identity, pid, seconds, seconds=seconds, outcome="verified")
    session.commit()
    success, false_supports, latency = slo.slo_status(session, tenant_id=identity.tenant_id, now=NOW)
    assert latency.value == pytest.approx(19, abs=0.01) and latency.met is True
    assert success.value == 1.0 and success.met is True
    assert false_supports.value == 0 and false_supports.met is True


def test_slos_without_data_say_so(session: Session, identity: Identity) -> None:
    success, _false_supports, latency = slo.slo_status(session, tenant_id=identity.tenant_id, now=NOW)
    assert success.value is None and success.verdict == "no data" and success.shown == "–"
    assert latency.value is None and latency.verdict == "no data"


# Scheduling ------------------------------------------------------------------------------------


def test_the_schedule_evaluates_once_per_interval(clean_db: Engine, session: Session, identity: Identity) -> None:
    reports(session, identity, 1, at=utcnow())
    session.commit()
    clock = [1000.0]
    schedule = AlertSchedule(clean_db, interval_s=60, clock=lambda: clock[0])
    assert schedule.tick(), "the first round evaluates at once"
    assert [e.rule for e in events(clean_db, identity.tenant_id)] == ["false_support"]
    clock[0] += 59
    assert not schedule.tick(), "not on every maintenance round"
    clock[0] += 1
    assert schedule.tick()


def test_the_worker_maintenance_evaluates_alerts(clean_db: Engine, session: Session, identity: Identity) -> None:
    from workers.__main__ import Maintenance

    reports(session, identity, 1, at=utcnow())
    session.commit()
    # A failed-login counter a week idle: the same beat's housekeeping forgets it.
    session.add(LoginThrottle(login="guess@evil.example", failures=2, last_failure_at=utcnow() - timedelta(days=7)))
    session.commit()
    maintenance = Maintenance(clean_db, "alerts-test-worker", ["facts"])
    assert maintenance.alerts.interval_s == 60, "WORKBENCH_ALERT_INTERVAL_S, default 60 s"
    assert maintenance.alerts.tick()
    assert [(e.rule, e.state) for e in events(clean_db, identity.tenant_id)] == [("false_support", "firing")]
    with db.session_scope(clean_db) as s:
        assert s.get(LoginThrottle, "guess@evil.example") is None


def test_the_in_process_executor_evaluates_alerts_in_its_maintenance(
    clean_db: Engine, session: Session, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(session, identity, 1, at=utcnow())
    session.commit()
    monkeypatch.setattr(executors, "MAINTENANCE_S", 0.05)
    executor = executors.InProcessExecutor(clean_db, threads=1)
    try:
        deadline = time.monotonic() + 20
        while not events(clean_db, identity.tenant_id) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        executor.close()
    assert [(e.rule, e.state) for e in events(clean_db, identity.tenant_id)] == [("false_support", "firing")]


def test_a_broken_evaluation_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    broken = db.get_engine("postgresql://nobody@127.0.0.1:1/nothing")  # nothing listens on port 1
    assert AlertSchedule(broken, interval_s=60).tick()
    assert "evaluating alert rules failed" in caplog.text
    assert "sign-in housekeeping failed" in caplog.text


# CLI -------------------------------------------------------------------------------------------


def test_cli_evaluates_and_lists_alerts(
    clean_db: Engine, session: Session, identity: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["alerts", "evaluate"]) == 0
    assert f"no alert firing (1 tenant(s), {len(alerts.RULES)} rules each)" in capsys.readouterr().out
    reports(session, identity, 2, at=utcnow())
    session.commit()
    assert cli.main(["alerts", "evaluate"]) == 0, "firing alerts are not a failure of the command"
    out = capsys.readouterr().out
    assert "default\tcritical\tfalse_support\tFalse support reports: 2, over 0" in out
    assert cli.main(["alerts", "list"]) == 0
    assert "default\tfiring\tcritical\tfalse_support" in capsys.readouterr().out


# False support reports and the pages ------------------------------------------------------------


def test_only_a_supported_sentence_of_this_tenant_can_be_reported(clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    tenant = seeded.identity.tenant_id
    with db.session_scope(clean_db) as s:
        checks = list(s.scalars(select(SentenceCheck).where(SentenceCheck.version_id == seeded.version_id)))
        other = create_tenant(s, slug="elsewhere", name="Elsewhere")
    supported = next(c for c in checks if c.verdict == "supported")
    with db.session_scope(clean_db) as s, pytest.raises(NotFoundError, match="not in this workspace"):
        report_false_support(s, tenant_id=other.tenant_id, user_id=other.user_id, sentence_check_id=supported.id)
    with db.session_scope(clean_db) as s:  # another paragraph, whose sentence the Verifier refused
        pid = add_paragraph(s, tenant_id=tenant, manuscript_id=seeded.manuscript_id, brief="b").id
        old = ParagraphVersion(
            tenant_id=tenant,
            paragraph_id=pid,
            number=99,
            text="x",
            status="needs_review",
            origin="drafted",
            provider="local",
        )
        s.add(old)
        s.flush()
        refused = SentenceCheck(tenant_id=tenant, version_id=old.id, ordinal=0, text="x", verdict="unsupported")
        s.add(refused)
    with db.session_scope(clean_db) as s, pytest.raises(FalseSupportError, match="already shown as unsupported"):
        report_false_support(s, tenant_id=tenant, user_id=seeded.identity.user_id, sentence_check_id=refused.id)
    with db.session_scope(clean_db) as s:
        reportable = [r.sentence_check_id for r in reportable_sentences(s, tenant_id=tenant)]
        assert supported.id in reportable and refused.id not in reportable
        report = report_false_support(
            s, tenant_id=tenant, user_id=seeded.identity.user_id, sentence_check_id=supported.id, note=" wrong year "
        )
        assert (report.paragraph_id, report.note, report.source) == (seeded.paragraph_id, "wrong year", "researcher")
    with db.session_scope(clean_db) as s, pytest.raises(FalseSupportError, match="reported this sentence already"):
        report_false_support(s, tenant_id=tenant, user_id=seeded.identity.user_id, sentence_check_id=supported.id)


def test_verification_page_reports_a_false_support_and_the_alert_fires(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/verification.py")  # as the admin, who may open Operations below too
    sentence = at.selectbox(key="verification_report_sentence")
    chosen = sentence.value
    at.text_input(key="verification_report_note").input("The paper says 2019, not 2021.")
    at.button(key="FormSubmitter:verification_report-Report false support").click().run()
    assert not at.exception, at.exception
    assert any("Reported." in s.value for s in at.success), [e.value for e in at.error]
    with db.session_scope(clean_db) as s:
        [stored] = s.scalars(select(FalseSupportReport))
        assert (stored.sentence_check_id, stored.reported_by) == (chosen, role_user(clean_db, "admin").user_id)
        assert stored.note == "The paper says 2019, not 2021."
    [event] = events(clean_db, seeded.identity.tenant_id)
    assert (event.rule, event.state, event.severity, event.value) == ("false_support", "firing", "critical", 1)

    at.switch_page("pages/operations.py").run()
    assert any(e.value.startswith("**False support reports** firing since") for e in at.error)
    at.switch_page("pages/write.py").run()  # every page says an alert is firing
    assert any(w.value.startswith("1 alert firing in this workspace") for w in at.warning)


def test_operations_shows_firing_alerts_slos_and_saves_a_rule(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        for _ in range(12):  # $0.90 a paragraph run: over the $0.50 default
            usage(s, ident, 0.90, at=utcnow() - timedelta(minutes=5))
    at = make_app("pages/operations.py")
    assert "Alerts and SLOs" in [h.value for h in at.subheader]
    [warning] = [w.value for w in at.warning if w.value.startswith("**Cost per paragraph**")]
    assert ui.md_escape("$0.9000, over $0.5000") in warning
    metrics = {m.label: m for m in at.metric}
    assert {"Paragraph success rate", "False supports", "P95 paragraph latency"} <= set(metrics)
    assert metrics["False supports"].value == "0"
    assert metrics["False supports"].proto.delta == "met · target at most 0"
    assert metrics["Paragraph success rate"].proto.delta == "no data · target at least 95.0%"
    history = next(d.value for d in at.dataframe if "Severity" in d.value.columns)
    assert list(history["Rule"]) == ["Cost per paragraph"] and list(history["State"]) == ["firing"]

    # Raise the threshold over the spend: saved for this workspace, and the alert resolves.
    at.selectbox(key="operations_alert_rule").set_value("cost_per_paragraph").run()
    at.number_input(key="operations_alert_threshold_cost_per_paragraph").set_value(1.25)
    at.button(key="FormSubmitter:operations_alert_form-Save rule").click().run()
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        saved = {r.name: r for r in alerts.rule_settings(s, tenant_id=ident.tenant_id)}["cost_per_paragraph"]
    assert saved.threshold == 1.25 and saved.actor == "Admin (admin@localhost)"  # make_app signs in the admin
    assert not [w for w in at.warning if w.value.startswith("**Cost per paragraph**")]
    assert [e.state for e in events(clean_db, ident.tenant_id)] == ["resolved"]

    # A monthly budget, typed in percent and dollars; out of range is refused with the reason.
    at.selectbox(key="operations_alert_rule").set_value("budget").run()
    at.number_input(key="operations_alert_threshold_budget").set_value(150.0)
    at.number_input(key="operations_alert_budget_monthly_budget_usd").set_value(10.0)
    at.button(key="FormSubmitter:operations_alert_form-Save rule").click().run()
    assert any(ui.md_escape("must be between 1.0% and 100.0%; got 150.0%") in e.value for e in at.error)
    at.number_input(key="operations_alert_threshold_budget").set_value(50.0)
    at.button(key="FormSubmitter:operations_alert_form-Save rule").click().run()
    assert not at.exception, at.exception
    [critical] = [e.value for e in at.error if e.value.startswith("**Monthly budget used**")]
    assert ui.md_escape("$10.80 of the $10.00 monthly budget") in critical
