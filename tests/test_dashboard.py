"""The Costs dashboard against a small data set whose every figure is known, on the real database
(SQLite, or PostgreSQL with TEST_DATABASE_URL), and the Costs page through AppTest."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from core import dashboard, db
from core.manuscripts import add_paragraph, create_manuscript
from core.models import LlmUsageEvent, ParagraphVersion, SentenceCheck, User
from core.tenancy import Identity, bootstrap, create_tenant
from tests.ui_helpers import MakeApp

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def usage(session: Session, tenant_id: int, at: datetime, **fields: Any) -> None:
    values: dict[str, Any] = {
        "trace_id": "t0",
        "agent": "writer",
        "provider": "openai",
        "model": "gpt-4.1",
        "prompt_version": "v1",
        "input_hash": "h",
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "latency_ms": 0.0,
    }
    values.update(fields)
    values["pricing"] = "unknown_model" if values["cost_usd"] is None else "priced"
    session.add(LlmUsageEvent(tenant_id=tenant_id, created_at=at, **values))


def version(
    session: Session,
    tenant_id: int,
    paragraph_id: int,
    trace_id: str,
    at: datetime,
    pins: tuple[str, str],
    *checks: str,
) -> None:
    """A paragraph version whose sentences are ``S`` (supported) or a failure mode (unsupported)."""
    row = ParagraphVersion(
        tenant_id=tenant_id,
        paragraph_id=paragraph_id,
        number=1,
        text="…",
        status="verified" if all(c == "S" for c in checks) else "needs_review",
        origin="drafted",
        trace_id=trace_id,
        prompt_versions={"writer": pins[0], "verifier": pins[1]},
        provider="openai",
        created_at=at,
    )
    session.add(row)
    session.flush()
    for ordinal, check in enumerate(checks, start=1):
        session.add(
            SentenceCheck(
                tenant_id=tenant_id,
                version_id=row.id,
                ordinal=ordinal,
                text=f"Sentence {ordinal}",
                cites=["F1"],
                verdict="supported" if check == "S" else "unsupported",
                failure_mode=None if check == "S" else check,
                reason="",
            )
        )


@dataclass(frozen=True)
class Data:
    a: Identity
    b: Identity


def seed(engine: Engine, now: datetime = NOW) -> Data:
    """Tenant A's calls and versions (figures in the tests below) and tenant B's, never counted for A."""
    with db.session_scope(engine) as s:
        a = bootstrap(s)
        b = create_tenant(s, slug="other-lab", name="Other lab")
        m = create_manuscript(s, tenant_id=a.tenant_id, title="Known figures")
        p = [add_paragraph(s, tenant_id=a.tenant_id, manuscript_id=m.id, brief=f"Brief {i}").id for i in range(5)]
        mb = create_manuscript(s, tenant_id=b.tenant_id, title="Elsewhere")
        pb = add_paragraph(s, tenant_id=b.tenant_id, manuscript_id=mb.id, brief="Theirs").id
        A, B = a.tenant_id, b.tenant_id  # short: they start every row below
        # The last 24 hours: 5 calls, one unpriced, one cache hit, one error.
        usage(s, A, now - 1 * H, trace_id="t1", paragraph_id=p[0], input_tokens=1000, output_tokens=200,
              cost_usd=0.01, latency_ms=100)  # fmt: skip
        usage(s, A, now - 2 * H, trace_id="t1", paragraph_id=p[0], agent="verifier", model="gpt-4.1-nano",
              input_tokens=500, output_tokens=50, cost_usd=0.002, latency_ms=200)  # fmt: skip
        usage(s, A, now - 3 * H, trace_id="t2", paragraph_id=p[1], provider="anthropic", model="acme-unpriced",
              input_tokens=800, output_tokens=100, cost_usd=None, latency_ms=300)  # fmt: skip
        usage(s, A, now - 3.5 * H, trace_id="t2", paragraph_id=p[1], agent="verifier", model="gpt-4.1-nano",
              cache_hit=True, latency_ms=1)  # fmt: skip
        usage(s, A, now - 5 * H, trace_id="t3", agent="librarian", model="gpt-4.1-mini", error_class="timeout",
              latency_ms=400)  # fmt: skip
        # Earlier in the week (the second call is in the 24 hours before the last 24).
        usage(s, A, now - 3 * D, trace_id="t4", paragraph_id=p[2], prompt_version="v2", input_tokens=1500,
              output_tokens=300, cost_usd=0.03, latency_ms=500)  # fmt: skip
        usage(s, A, now - 47 * H, trace_id="t5", paragraph_id=p[3], prompt_version="v2", input_tokens=1200,
              output_tokens=250, cost_usd=0.018, latency_ms=600)  # fmt: skip
        usage(s, A, now - 10 * D, trace_id="t6", paragraph_id=p[4], cost_usd=0.02)  # the week before
        usage(s, A, now - 20 * D, trace_id="t7", cost_usd=0.05)  # earlier this month
        usage(s, A, now - 40 * D, trace_id="t8", cost_usd=1.0)  # the month before
        usage(s, A, now + 1 * H, trace_id="t9", cost_usd=100.0)  # after the window ends
        usage(s, B, now - 1 * H, trace_id="tb", paragraph_id=pb, cost_usd=5.0, latency_ms=9999)
        usage(s, B, now - 1 * H, trace_id="tb", paragraph_id=pb, error_class="rate_limit", latency_ms=9999)

        version(s, A, p[0], "t1", now - 50 * timedelta(minutes=1), ("v1", "v1"), "S", "S")
        version(s, A, p[1], "t2", now - 170 * timedelta(minutes=1), ("v1", "v1"), "S", "number_mismatch", "no_citation")
        version(s, A, p[2], "t4", now - 3 * D + 60 * timedelta(seconds=1), ("v2", "v1"), "S")
        version(
            s,
            A,
            p[3],
            "t5",
            now - 47 * H + 60 * timedelta(seconds=1),
            ("v2", "v1"),
            "number_mismatch",
            "number_mismatch",
        )
        version(s, A, p[4], "t6", now - 10 * D, ("v1", "v1"), "S")
        version(s, B, pb, "tb", now - 1 * H, ("v1", "v1"), "negation")
    return Data(a, b)


@pytest.fixture
def data(clean_db: Engine) -> Data:
    return seed(clean_db)


def figures(engine: Engine, function: Any, **kwargs: Any) -> Any:
    with db.session_scope(engine) as s:
        return function(s, **kwargs)


# Totals, buckets, breakdowns -----------------------------------------------------------------


def test_totals_per_window_with_the_window_before(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    day = figures(clean_db, dashboard.totals, tenant_id=a, window="day", now=NOW)
    assert (day.current.calls, day.current.input_tokens, day.current.output_tokens) == (5, 2300, 350)
    assert day.current.spend_usd == pytest.approx(0.012)
    assert (day.current.unpriced_calls, day.current.cache_hits, day.current.errors) == (1, 1, 1)
    assert day.current.cache_hit_rate == pytest.approx(1 / 5)
    assert day.current.error_rate == pytest.approx(1 / 4), "errors among calls not answered from the cache"
    assert day.previous.spend_usd == pytest.approx(0.018) and day.spend_change == pytest.approx(-1 / 3)

    week = figures(clean_db, dashboard.totals, tenant_id=a, window="week", now=NOW)
    assert week.current.calls == 7 and week.current.spend_usd == pytest.approx(0.06)
    assert week.previous.spend_usd == pytest.approx(0.02)
    assert week.spend_change == pytest.approx(2.0), "week over week: 0.06 against 0.02"
    assert figures(clean_db, dashboard.week_over_week, tenant_id=a, now=NOW).spend_change == pytest.approx(2.0)

    month = figures(clean_db, dashboard.totals, tenant_id=a, window="month", now=NOW)
    assert month.current.calls == 9 and month.current.spend_usd == pytest.approx(0.13)
    assert month.previous.spend_usd == pytest.approx(1.0) and month.spend_change == pytest.approx(-0.87)


def test_another_tenants_rows_are_never_counted(clean_db: Engine, data: Data) -> None:
    b = data.b.tenant_id
    day = figures(clean_db, dashboard.totals, tenant_id=b, window="day", now=NOW)
    assert day.current.calls == 2 and day.current.spend_usd == pytest.approx(5.0)
    assert [r.p50_ms for r in figures(clean_db, dashboard.latency, tenant_id=b, window="day", now=NOW)] == [9999]
    assert figures(clean_db, dashboard.quality, tenant_id=b, window="day", now=NOW).failure_modes == {"negation": 1}
    a_latencies = figures(clean_db, dashboard.latency, tenant_id=data.a.tenant_id, window="month", now=NOW)
    assert 9999 not in [r.p95_ms for r in a_latencies]


def test_unpriced_calls_never_read_as_zero(clean_db: Engine, data: Data) -> None:
    rows = figures(clean_db, dashboard.breakdown, tenant_id=data.a.tenant_id, window="day", by="model", now=NOW)
    by_model = {r.key: r.usage for r in rows}
    assert by_model["acme-unpriced"].spend_usd is None and by_model["acme-unpriced"].unpriced_calls == 1
    assert by_model["gpt-4.1-mini"].spend_usd == 0.0, "a failed call of a priced model did cost nothing"
    assert [r.key for r in rows][-1] == "acme-unpriced", "unpriced groups come after every priced one"


def test_series_buckets_per_hour_and_per_day(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    hours = figures(clean_db, dashboard.series, tenant_id=a, window="day", now=NOW)
    assert len(hours) == 25 and hours[0].start == datetime(2026, 11, 19, 12, tzinfo=UTC)
    busy = {b.start.hour: b.usage for b in hours if b.usage.calls}
    assert set(busy) == {7, 9, 10, 11}
    assert busy[11].spend_usd == pytest.approx(0.01) and busy[10].spend_usd == pytest.approx(0.002)
    assert (busy[9].calls, busy[9].unpriced_calls, busy[9].cache_hits) == (2, 1, 1)
    assert busy[7].errors == 1
    assert sum(b.usage.calls for b in hours) == 5

    days = figures(clean_db, dashboard.series, tenant_id=a, window="week", now=NOW)
    assert [b.start.day for b in days] == [13, 14, 15, 16, 17, 18, 19, 20]
    spend = {b.start.day: b.usage.spend_usd for b in days}
    assert spend[17] == pytest.approx(0.03) and spend[18] == pytest.approx(0.018) and spend[20] == pytest.approx(0.012)
    assert spend[13] == 0.0 and [b.usage.calls for b in days] == [0, 0, 0, 0, 1, 1, 0, 5]


def test_breakdowns_by_agent_model_provider_and_prompt_version(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    day = figures(clean_db, dashboard.breakdowns, tenant_id=a, window="day", now=NOW)

    def spends(by: str) -> list[tuple[str, float | None, int]]:
        return [
            (r.key, None if r.usage.spend_usd is None else round(r.usage.spend_usd, 6), r.usage.calls) for r in day[by]
        ]

    assert spends("agent") == [("writer", 0.01, 2), ("verifier", 0.002, 2), ("librarian", 0.0, 1)]
    assert spends("model") == [
        ("gpt-4.1", 0.01, 1),
        ("gpt-4.1-nano", 0.002, 2),
        ("gpt-4.1-mini", 0.0, 1),
        ("acme-unpriced", None, 1),
    ]
    assert spends("provider") == [("openai", 0.012, 4), ("anthropic", None, 1)]
    assert spends("prompt_version") == [("writer/v1", 0.01, 2), ("verifier/v1", 0.002, 2), ("librarian/v1", 0.0, 1)]
    writer = day["agent"][0].usage
    assert (writer.input_tokens, writer.output_tokens, writer.unpriced_calls) == (1800, 300, 1)
    assert day["agent"][1].usage.cache_hit_rate == 0.5

    week = figures(clean_db, dashboard.breakdown, tenant_id=a, window="week", by="prompt_version", now=NOW)
    assert (week[0].key, round(week[0].usage.spend_usd or 0, 6)) == ("writer/v2", 0.048)
    with pytest.raises(dashboard.UnknownWindowError, match="choose one of agent, model, provider, prompt_version"):
        figures(clean_db, dashboard.breakdown, tenant_id=a, window="day", by="tenant", now=NOW)


def test_spend_by_tenant_covers_only_the_tenants_named(clean_db: Engine, data: Data) -> None:
    both = [data.a.tenant_id, data.b.tenant_id]
    rows = figures(clean_db, dashboard.spend_by_tenant, tenant_ids=both, window="month", now=NOW)
    assert [(r.tenant, round(r.usage.spend_usd or 0, 6), r.usage.calls) for r in rows] == [
        ("Other lab", 5.0, 2),
        ("Default workspace", 0.13, 9),
    ]
    only_a = figures(clean_db, dashboard.spend_by_tenant, tenant_ids=[data.a.tenant_id], window="month", now=NOW)
    assert [r.tenant for r in only_a] == ["Default workspace"]
    assert figures(clean_db, dashboard.admin_tenant_ids, user_id=data.a.user_id) == [], "a researcher sees no others"
    with db.session_scope(clean_db) as s:
        s.execute(update(User).where(User.id == data.a.user_id).values(role="admin"))
    assert figures(clean_db, dashboard.admin_tenant_ids, user_id=data.a.user_id) == both


def test_unknown_window_says_which_exist(clean_db: Engine) -> None:
    with pytest.raises(dashboard.UnknownWindowError, match="choose one of day, week, month"):
        figures(clean_db, dashboard.totals, tenant_id=1, window="year")


# Latency, errors, paragraph costs -------------------------------------------------------------


def test_latency_percentiles_interpolate_like_percentile_cont(clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        a, b = bootstrap(s).tenant_id, create_tenant(s, slug="b", name="B").tenant_id
        latencies = [10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        random.Random(5).shuffle(latencies)
        for ms in latencies:
            usage(s, a, NOW - H, agent="verifier", model="m", latency_ms=ms)
        for _ in range(3):
            usage(s, a, NOW - H, agent="verifier", model="m", latency_ms=0.5, cache_hit=True)
        usage(s, a, NOW - H, agent="writer", model="m2", latency_ms=42)
        usage(s, b, NOW - H, agent="verifier", model="m", latency_ms=10_000)
    rows = figures(clean_db, dashboard.latency, tenant_id=a, window="day", now=NOW)
    assert [(r.agent, r.model, r.calls) for r in rows] == [("verifier", "m", 10), ("writer", "m2", 1)]
    assert rows[0].p50_ms == pytest.approx(55.0) and rows[0].p95_ms == pytest.approx(95.5)
    assert rows[1].p50_ms == pytest.approx(42.0) and rows[1].p95_ms == pytest.approx(42.0)


def test_error_rate_by_provider_and_model(clean_db: Engine, data: Data) -> None:
    rows = figures(clean_db, dashboard.error_rates, tenant_id=data.a.tenant_id, window="day", now=NOW)
    assert [(r.provider, r.model, r.calls, r.errors, r.error_rate) for r in rows] == [
        ("openai", "gpt-4.1-mini", 1, 1, 1.0),
        ("anthropic", "acme-unpriced", 1, 0, 0.0),
        ("openai", "gpt-4.1", 1, 0, 0.0),
        ("openai", "gpt-4.1-nano", 1, 0, 0.0),  # its cache hit is not a call sent
    ]
    assert rows[0].by_class == {"timeout": 1}


def test_cost_per_paragraph_and_per_verified_paragraph(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    day = figures(clean_db, dashboard.paragraph_costs, tenant_id=a, window="day", now=NOW)
    assert (day.runs, day.verified_runs, day.priced_runs, day.unpriced_runs) == (2, 1, 1, 1)
    assert day.cost_per_paragraph == pytest.approx(0.012), "the run with an unpriced call is left out of the cost"
    assert day.cost_per_verified_paragraph == pytest.approx(0.012)

    week = figures(clean_db, dashboard.paragraph_runs, tenant_id=a, window="week", now=NOW)
    total = week.total
    assert (total.runs, total.verified_runs, total.priced_runs) == (4, 2, 3)
    assert total.cost_per_paragraph == pytest.approx(0.02)
    assert total.cost_per_verified_paragraph == pytest.approx(0.03), "failed runs' spend counts against verified ones"
    assert [(m.model, m.costs.runs, m.costs.verified_runs) for m in week.by_model] == [
        ("gpt-4.1", 3, 2),
        ("acme-unpriced", 1, 0),
    ]
    assert week.by_model[0].costs.cost_per_paragraph == pytest.approx(0.02)
    assert week.by_model[0].costs.verification_rate == pytest.approx(2 / 3)
    assert week.by_model[1].costs.cost_per_paragraph is None, "unpriced, not $0"


# Quality -------------------------------------------------------------------------------------


def test_quality_of_the_versions_saved_in_the_window(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    day = figures(clean_db, dashboard.quality, tenant_id=a, window="day", now=NOW)
    assert (day.paragraphs, day.verified_paragraphs, day.sentences, day.supported) == (2, 1, 5, 3)
    assert day.sentence_support_rate == pytest.approx(0.6) and day.paragraph_verification_rate == 0.5
    assert day.failure_modes == {"no_citation": 1, "number_mismatch": 1}
    week = figures(clean_db, dashboard.quality, tenant_id=a, window="week", now=NOW)
    assert (week.paragraphs, week.verified_paragraphs, week.sentences, week.supported) == (4, 2, 8, 4)
    assert week.failure_modes == {"number_mismatch": 3, "no_citation": 1}


def test_prompt_version_against_failure_rate(clean_db: Engine, data: Data) -> None:
    rows = figures(clean_db, dashboard.prompt_failure_rates, tenant_id=data.a.tenant_id, window="week", now=NOW)
    assert [(r.agent, r.prompt_version, r.versions, r.failed_versions, r.sentences, r.unsupported) for r in rows] == [
        ("verifier", "v1", 4, 2, 8, 4),
        ("writer", "v1", 2, 1, 5, 2),
        ("writer", "v2", 2, 1, 3, 2),
    ]
    assert rows[2].failure_rate == 0.5 and rows[2].sentence_failure_rate == pytest.approx(2 / 3)


# Aggregation happens in the database ---------------------------------------------------------


class CountingSession:
    """A session that counts the statements run and the rows each returns."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rows: list[int] = []

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.session.execute(statement, *args, **kwargs)
        if not statement.is_select:  # SET LOCAL on PostgreSQL
            return result
        frozen = result.freeze()
        self.rows.append(len(frozen.data))
        return frozen()

    def get_bind(self) -> Any:
        return self.session.get_bind()


def rows_fetched(engine: Engine, tenant_id: int) -> list[int]:
    with db.session_scope(engine) as s:
        counting = CountingSession(s)
        dashboard.costs_view(counting, tenant_id=tenant_id, window="month", now=NOW)  # type: ignore[arg-type]
        return counting.rows


def test_the_page_figures_fetch_rows_by_group_not_by_event(clean_db: Engine, data: Data) -> None:
    a = data.a.tenant_id
    before = rows_fetched(clean_db, a)
    with db.session_scope(clean_db) as s:
        for i in range(400):  # many more events in the same groups
            usage(s, a, NOW - (i % 600) * timedelta(minutes=1) - H, trace_id=f"bulk{i % 7}", cost_usd=0.001)
    after = rows_fetched(clean_db, a)
    assert len(after) == len(before) <= 10, "a fixed number of statements"
    assert max(after) <= 31, "each statement returns at most one row per group or bucket"
    assert sum(after) == sum(before), "400 more events, not one more row fetched"


# The Costs page ------------------------------------------------------------------------------


def metrics(at: Any) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_costs_page_shows_the_figures_and_switches_window(make_app: MakeApp, clean_db: Engine) -> None:
    seed(clean_db, now=datetime.now(UTC) - timedelta(minutes=1))
    at = make_app("pages/costs.py", role="ops")  # ops see costs, but only admins compare tenants
    shown = metrics(at)
    assert shown["Spend"] == "$0.0600" and shown["Agent calls"] == "7" and shown["Unpriced calls"] == "1"
    assert shown["Tokens (in + out)"] == "5,900"
    assert shown["Week-over-week spend"] == "+200.0%"
    assert shown["Cost per paragraph"] == "$0.0200" and shown["Cost per verified paragraph"] == "$0.0300"
    assert shown["Cache hit rate"] == "14.3%" and shown["Error rate"] == "16.7%"
    assert shown["Sentence support rate"] == "50.0%" and shown["Paragraph verification rate"] == "50.0%"
    spend = next(m for m in at.metric if m.label == "Spend")
    assert spend.delta == "+200.0% vs the week before"
    models = next(d.value for d in at.dataframe if "Model" in d.value.columns and "Spend" in d.value.columns)
    assert dict(zip(models["Model"], models["Spend"], strict=True))["acme-unpriced"] == "unpriced"
    assert "Spend by tenant" not in [h.value for h in at.subheader], "only admins compare tenants"

    at.radio(key="costs_window").set_value("day").run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Spend"] == "$0.0120" and shown["Agent calls"] == "5"
    assert next(m for m in at.metric if m.label == "Spend").delta == "-33.3% vs the 24 hours before"


def test_costs_page_shows_spend_by_tenant_to_an_admin(make_app: MakeApp, clean_db: Engine) -> None:
    data = seed(clean_db, now=datetime.now(UTC) - timedelta(minutes=1))
    with db.session_scope(clean_db) as s:
        s.execute(update(User).where(User.id == data.a.user_id).values(role="admin"))
    at = make_app("pages/costs.py")
    assert "Spend by tenant" in [h.value for h in at.subheader]
    tenants = next(d.value for d in at.dataframe if "Tenant" in d.value.columns)
    assert list(tenants["Tenant"]) == ["Other lab", "Default workspace"]
    assert list(tenants["Spend"]) == ["$5.00", "$0.0600"]


def test_costs_page_on_an_empty_database(make_app: MakeApp) -> None:
    at = make_app("pages/costs.py")
    assert not at.exception
    shown = metrics(at)
    assert shown["Spend"] == "$0.0000" and shown["Agent calls"] == "0"
    assert shown["Cost per paragraph"] == "–", "no run is not an unpriced run"
    assert any("No agent calls in this window yet" in i.value for i in at.info)
