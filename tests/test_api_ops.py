"""The ops routes (costs, cost alerts, routing, trajectories) on the real app and database (SQLite, or
PostgreSQL with TEST_DATABASE_URL): each tenant's token reads its own figures and nothing of another's,
each role is refused what it may not do, lists page with their totals, and bad input is a 422 body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from core import dashboard, db
from core.models import AuditEntry, LlmUsageEvent, Trajectory, utcnow
from core.tenancy import bootstrap, create_tenant
from tests import api_helpers
from tests.ui_helpers import Seeded, seed_drafted

B_MODEL = "b-secret-model"
B_TRACE = "trace-of-tenant-b"
B_EVENTS = 3


@dataclass(frozen=True)
class World:
    client: TestClient
    a_admin: dict[str, str]
    a_ops: dict[str, str]
    a_researcher: dict[str, str]
    b_ops: dict[str, str]
    b_tenant: int


def _tenant_b(engine: Engine) -> int:
    """A second tenant with three priced calls of a model only it uses, and one finished run."""
    now = utcnow()
    with db.session_scope(engine) as s:
        tenant_id = create_tenant(s, slug="lab-b", name="Lab B").tenant_id
        bootstrap(s)  # the default tenant (A) too, for the tests that do not draft
        for n in range(B_EVENTS):
            s.add(
                LlmUsageEvent(
                    tenant_id=tenant_id,
                    trace_id=B_TRACE,
                    agent="writer",
                    provider="openai",
                    model=B_MODEL,
                    prompt_version="v1",
                    input_hash="h",
                    input_tokens=100,
                    output_tokens=10,
                    cost_usd=1.0,
                    pricing="priced",
                    latency_ms=200.0 + n,
                    created_at=now - timedelta(minutes=n + 1),
                )
            )
        s.add(
            Trajectory(
                trace_id=B_TRACE,
                tenant_id=tenant_id,
                kind="paragraph",
                status="ok",
                calls=B_EVENTS,
                started_at=now - timedelta(minutes=5),
                ended_at=now - timedelta(minutes=1),
            )
        )
    return tenant_id


@pytest.fixture
def world(clean_db: Engine) -> World:
    b_tenant = _tenant_b(clean_db)

    def bearer(role: str, tenant_id: int | None = None) -> dict[str, str]:
        who = api_helpers.user(clean_db, role=role, tenant_id=tenant_id)
        return api_helpers.headers(api_helpers.token(clean_db, who))

    return World(
        client=api_helpers.client(),
        a_admin=bearer("admin"),
        a_ops=bearer("ops"),
        a_researcher=bearer("researcher"),
        b_ops=bearer("ops", b_tenant),
        b_tenant=b_tenant,
    )


@pytest.fixture
def drafted(world: World, clean_db: Engine) -> Seeded:
    """A paragraph drafted in tenant A through the real pipeline (usage events, a trajectory, content)."""
    return seed_drafted(clean_db)


def _ok(world: World, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = world.client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _refused(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert error["message"]
    return error


# Costs -----------------------------------------------------------------------------------------


def test_cost_summary_is_the_token_tenants_figures(world: World, drafted: Seeded, clean_db: Engine) -> None:
    a = _ok(world, "/api/v1/ops/costs/summary", world.a_ops, window="day")
    with db.session_scope(clean_db) as s:
        expected = dashboard.totals(s, tenant_id=drafted.identity.tenant_id, window="day")
    assert a["current"]["calls"] == expected.current.calls > 0
    assert a["current"]["tokens"] == expected.current.tokens
    assert B_MODEL not in {row["key"] for row in a["by_model"]}
    assert a["paragraphs"]["runs"] >= 1  # the drafted paragraph

    b = _ok(world, "/api/v1/ops/costs/summary", world.b_ops, window="week")
    assert b["window"] == "week"
    assert b["current"]["calls"] == B_EVENTS
    assert b["current"]["spend_usd"] == pytest.approx(3.0)
    assert b["current"]["input_tokens"] == 300
    assert [row["key"] for row in b["by_model"]] == [B_MODEL]
    assert [row["key"] for row in b["by_agent"]] == ["writer"]
    assert b["latency"] == [{"agent": "writer", "model": B_MODEL, "calls": 3, "p50_ms": 201.0, "p95_ms": 201.9}]


def test_cost_summary_refuses_an_unknown_window_with_the_error_body(world: World) -> None:
    error = _refused(world.client.get("/api/v1/ops/costs/summary?window=year", headers=world.a_ops), 422)
    assert error["code"] == "invalid_request"
    assert "window" in error["message"]


def test_cost_events_page_newest_first_with_the_total_and_no_other_tenant(world: World) -> None:
    b = _ok(world, "/api/v1/ops/costs/events", world.b_ops, limit=2)
    assert b["total"] == B_EVENTS and len(b["items"]) == 2
    assert b["items"][0]["created_at"] > b["items"][1]["created_at"]
    assert set(b["items"][0]) == {
        "id",
        "trace_id",
        "paragraph_id",
        "agent",
        "provider",
        "model",
        "prompt_version",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "cache_hit",
        "error_class",
        "created_at",
    }
    rest = _ok(world, "/api/v1/ops/costs/events", world.b_ops, limit=2, offset=2)
    assert rest["total"] == B_EVENTS and len(rest["items"]) == 1
    assert {e["id"] for e in b["items"]}.isdisjoint({e["id"] for e in rest["items"]})

    assert _ok(world, "/api/v1/ops/costs/events", world.a_ops, limit=200) == {
        "items": [],
        "total": 0,
        "limit": 200,
        "offset": 0,
    }
    assert _ok(world, "/api/v1/ops/costs/events", world.a_ops, model=B_MODEL)["total"] == 0
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert _ok(world, "/api/v1/ops/costs/events", world.b_ops, since=later)["total"] == 0
    assert _ok(world, "/api/v1/ops/costs/events", world.b_ops, until=later, agent="writer")["total"] == B_EVENTS


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "agent=bad%00name", "since=yesterday"])
def test_cost_events_refuse_bad_paging_and_filters(world: World, query: str) -> None:
    error = _refused(world.client.get(f"/api/v1/ops/costs/events?{query}", headers=world.a_ops), 422)
    assert error["code"] == "invalid_request"


def test_cost_alert_rules_change_audited_and_per_tenant(world: World, clean_db: Engine) -> None:
    body = {"rule": "cost_per_paragraph", "threshold": 0.25, "enabled": False, "params": {}}
    response = world.client.post("/api/v1/ops/costs/alerts", headers=world.a_ops, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["threshold"] == 0.25 and response.json()["enabled"] is False

    rules = {r["rule"]: r for r in _ok(world, "/api/v1/ops/costs/alerts", world.a_ops)}
    assert rules["cost_per_paragraph"]["threshold"] == 0.25
    assert rules["cost_per_paragraph"]["actor"]
    theirs = {r["rule"]: r for r in _ok(world, "/api/v1/ops/costs/alerts", world.b_ops)}
    assert theirs["cost_per_paragraph"]["threshold"] == 0.5 and theirs["cost_per_paragraph"]["actor"] == ""
    with db.session_scope(clean_db) as s:
        audited = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.event_type == "alert_rule_changed", AuditEntry.subject == "cost_per_paragraph")
        )
    assert audited == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"rule": "no_such_rule", "threshold": 1}, "no alert rule"),
        ({"rule": "cost_per_paragraph", "threshold": 5000}, "between"),
        ({"rule": "cost_per_paragraph"}, "threshold"),
    ],
)
def test_cost_alert_refusals_say_what_to_fix(world: World, body: dict[str, Any], says: str) -> None:
    error = _refused(world.client.post("/api/v1/ops/costs/alerts", headers=world.a_admin, json=body), 422)
    assert says in error["message"]


# Routing ---------------------------------------------------------------------------------------


def test_routing_config_saved_by_ops_is_the_tenants_next_version(world: World, clean_db: Engine) -> None:
    current = _ok(world, "/api/v1/ops/routing/config", world.a_ops)
    assert current["version"] == 0
    config = {**current["config"], "simple_below": 20.0, "complex_from": 70.0}
    response = world.client.post(
        "/api/v1/ops/routing/config", headers=world.a_ops, json={"config": config, "note": "cheaper simple tier"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["config"]["simple_below"] == 20.0
    assert _ok(world, "/api/v1/ops/routing/config", world.a_ops)["note"] == "cheaper simple tier"
    assert _ok(world, "/api/v1/ops/routing/config", world.b_ops)["version"] == 0
    with db.session_scope(clean_db) as s:
        assert s.scalar(select(func.count()).where(AuditEntry.event_type == "routing_changed")) == 1

    again = world.client.post("/api/v1/ops/routing/config", headers=world.a_ops, json={"config": config})
    assert "Nothing changed" in _refused(again, 422)["message"]


def test_routing_config_that_cannot_be_used_is_a_422_saying_why(world: World) -> None:
    bad = {"config": {"simple_below": 80, "complex_from": 20}}
    error = _refused(world.client.post("/api/v1/ops/routing/config", headers=world.a_admin, json=bad), 422)
    assert "simple must be below complex" in error["message"]


# Trajectories ----------------------------------------------------------------------------------


def test_trajectories_list_pages_filters_and_keeps_to_the_tenant(world: World, drafted: Seeded) -> None:
    a = _ok(world, "/api/v1/ops/trajectories", world.a_ops, limit=200)
    assert a["total"] == len(a["items"]) >= 1
    assert B_TRACE not in {t["trace_id"] for t in a["items"]}
    writer_runs = _ok(world, "/api/v1/ops/trajectories", world.a_ops, agent_type="writer", status="ok")
    assert writer_runs["total"] >= 1 and all(t["status"] == "ok" for t in writer_runs["items"])
    assert _ok(world, "/api/v1/ops/trajectories", world.a_ops, agent_type="no-such-agent")["total"] == 0

    b = _ok(world, "/api/v1/ops/trajectories", world.b_ops, limit=1)
    assert b["total"] == 1 and [t["trace_id"] for t in b["items"]] == [B_TRACE]
    past = _ok(world, "/api/v1/ops/trajectories", world.b_ops, limit=1, offset=1)
    assert past == {"items": [], "total": 1, "limit": 1, "offset": 1}
    error = _refused(world.client.get("/api/v1/ops/trajectories?limit=2&offset=1", headers=world.b_ops), 422)
    assert "multiple of limit" in error["message"]


def test_a_trace_shows_spans_and_content_to_its_tenant_and_is_404_to_another(
    world: World, drafted: Seeded, clean_db: Engine
) -> None:
    listed = _ok(world, "/api/v1/ops/trajectories", world.a_ops, agent_type="writer")["items"][0]
    trace = _ok(world, f"/api/v1/ops/trajectories/{listed['trace_id']}", world.a_ops)
    assert trace["trajectory"]["trace_id"] == listed["trace_id"]
    assert trace["content_hidden"] is False and trace["spans"]
    assert any(span["agent"] == "writer" for span in trace["spans"])
    assert any(span["content"] is not None for span in trace["spans"])
    assert trace["version"]["paragraph_id"] == drafted.paragraph_id
    with db.session_scope(clean_db) as s:
        viewed = s.scalar(select(func.count()).where(AuditEntry.event_type == "trace_viewed"))
    assert viewed == 1

    _refused(world.client.get(f"/api/v1/ops/trajectories/{B_TRACE}", headers=world.a_ops), 404)
    assert _ok(world, f"/api/v1/ops/trajectories/{B_TRACE}", world.b_ops)["trajectory"]["calls"] == B_EVENTS
    _refused(world.client.get(f"/api/v1/ops/trajectories/{listed['trace_id']}", headers=world.b_ops), 404)


# Roles and tenants -----------------------------------------------------------------------------

READS = [
    "/api/v1/ops/costs/summary",
    "/api/v1/ops/costs/events",
    "/api/v1/ops/costs/alerts",
    "/api/v1/ops/routing/config",
    "/api/v1/ops/trajectories",
    f"/api/v1/ops/trajectories/{B_TRACE}",
]


@pytest.mark.parametrize("path", READS)
def test_a_researcher_is_refused_every_ops_read(world: World, path: str) -> None:
    assert _refused(world.client.get(path, headers=world.a_researcher), 403)["code"] == "permission_denied"


def test_a_researcher_cannot_change_routing_or_alerts_and_nothing_changes(world: World) -> None:
    config = _ok(world, "/api/v1/ops/routing/config", world.a_admin)["config"]
    changed = {"config": {**config, "simple_below": 10.0}}
    _refused(world.client.post("/api/v1/ops/routing/config", headers=world.a_researcher, json=changed), 403)
    alert = {"rule": "cost_per_paragraph", "threshold": 2.0}
    _refused(world.client.post("/api/v1/ops/costs/alerts", headers=world.a_researcher, json=alert), 403)
    assert _ok(world, "/api/v1/ops/routing/config", world.a_admin)["version"] == 0
    rules = {r["rule"]: r for r in _ok(world, "/api/v1/ops/costs/alerts", world.a_admin)}
    assert rules["cost_per_paragraph"]["threshold"] == 0.5


@pytest.mark.parametrize("path", READS)
def test_naming_another_tenant_is_refused(world: World, path: str) -> None:
    response = world.client.get(path, headers=world.a_admin, params={"tenant_id": world.b_tenant})
    assert _refused(response, 403)["code"] == "permission_denied"


def test_no_token_is_a_401(world: World) -> None:
    response = world.client.get("/api/v1/ops/costs/summary")
    assert _refused(response, 401)["code"] == "session_expired"
    assert response.headers["WWW-Authenticate"] == "Bearer"
