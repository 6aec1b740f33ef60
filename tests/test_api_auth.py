"""The ops API's tokens and the routes of api/routes_admin.py, on the real app and database: who may
do what, one tenant never reads another's, the error body, rate limits and request ids, and the API
tokens page."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, update
from starlette.testclient import TestClient

from core import accounts, api_tokens, audit, authz, controls, db, jobs
from core.errors import SessionExpiredError
from core.models import ApiToken, utcnow
from core.tenancy import Identity, bootstrap
from tests import api_helpers
from tests.api_helpers import headers, token, user
from tests.ui_helpers import MakeApp, Seeded, seed_drafted

OPERATIONS = api_helpers.documented_operations()
"""Every operation of docs/openapi.json that takes a token."""
BODY_OPERATIONS = api_helpers.body_operations()
"""Every operation of docs/openapi.json that takes a JSON body."""
RELEASE = ("POST", "/admin/kill-switch/release")
DRAFT = ("POST", "/api/v1/paragraphs")
READ_ONLY_POSTS = {("POST", "/api/v1/tools/search_corpus")}
"""POSTs that change nothing (a search)."""


def _ids(operations: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {path}" for method, path in operations]


@pytest.fixture
def api(clean_db: Engine) -> TestClient:
    return api_helpers.client()


def dead_tokens(engine: Engine, who: Identity) -> tuple[str, str]:
    """A revoked and an expired bearer secret of ``who``'s account."""
    revoked, expired = token(engine, who), token(engine, who)
    with db.session_scope(engine) as s:
        expired_id, revoked_id = (t.id for t in api_tokens.list_tokens(s, by=who)[:2])  # newest first
        api_tokens.revoke(s, by=who, token_id=revoked_id)
    with engine.begin() as connection:
        connection.execute(update(ApiToken).where(ApiToken.id == expired_id).values(expires_at=utcnow()))
    return revoked, expired


def engage_for_release(engine: Engine, operation: tuple[str, str], tenant_id: int) -> None:
    """Before a release is tried, the switch is engaged, so a refused release visibly leaves it so."""
    if operation == RELEASE:
        controls.set_kill_switch(engine, engaged=True, reason="drill", actor=authz.cli_identity(tenant_id))


def changes_state(operation: tuple[str, str]) -> bool:
    return operation[0] != "GET" and operation not in READ_ONLY_POSTS


def second_tenant(engine: Engine) -> int:
    with db.session_scope(engine) as s:
        by = authz.cli_identity(bootstrap(s).tenant_id)
        return accounts.create_tenant(s, by=by, slug="tenant-b", name="Tenant B")


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error body, whose request id is the one in the X-Request-ID header."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"} and error["message"]
    assert error["request_id"] and error["request_id"] == response.headers["x-request-id"]
    if code:
        assert error["code"] == code, error
    return dict(error)


# -- authentication ------------------------------------------------------------------------------------


def test_missing_unknown_revoked_and_expired_tokens_are_refused_with_the_error_body(
    api: TestClient, clean_db: Engine
) -> None:
    who = user(clean_db, role="researcher")
    revoked, expired, live = token(clean_db, who), token(clean_db, who), token(clean_db, who)
    with db.session_scope(clean_db) as s:
        expired_id, revoked_id = (t.id for t in api_tokens.list_tokens(s, by=who)[1:])  # newest first
        api_tokens.revoke(s, by=who, token_id=revoked_id)
    with clean_db.begin() as connection:
        connection.execute(update(ApiToken).where(ApiToken.id == expired_id).values(expires_at=utcnow()))

    assert "Send a bearer token" in assert_error(api.get("/api/v1/tools"), 401)["message"]
    assert "not known" in assert_error(api.get("/api/v1/tools", headers=headers("obw_nope")), 401)["message"]
    assert "revoked" in assert_error(api.get("/api/v1/tools", headers=headers(revoked)), 401)["message"]
    assert "expired" in assert_error(api.get("/api/v1/tools", headers=headers(expired)), 401)["message"]
    assert api.get("/api/v1/tools").headers["www-authenticate"] == "Bearer"

    tools = api.get("/api/v1/tools", headers=headers(live))
    assert tools.status_code == 200
    (search,) = tools.json()["tools"]
    assert search["name"] == "search_corpus"
    assert search["parameters"]["required"] == ["manuscript_id", "query"]


def test_every_documented_operation_has_a_plausible_request_and_a_permission(clean_db: Engine) -> None:
    assert sorted(api_helpers.PERMISSIONS) == OPERATIONS, "add the new operation to api_helpers.PERMISSIONS"
    calls = api_helpers.plausible_calls(clean_db, seed_drafted(clean_db))
    assert sorted(calls) == OPERATIONS
    assert sorted(op for op, call in calls.items() if call.body is not None) == BODY_OPERATIONS, (
        "give the new body-taking operation a valid body in api_helpers.plausible_calls"
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=_ids(OPERATIONS))
def test_a_revoked_or_expired_token_is_refused_on_every_operation_and_changes_nothing(
    api: TestClient, clean_db: Engine, method: str, path: str
) -> None:
    seeded = seed_drafted(clean_db)
    call = api_helpers.plausible_calls(clean_db, seeded)[(method, path)]
    admin = user(clean_db, role="admin")  # every permission: only the token can be why it is refused
    revoked, expired = dead_tokens(clean_db, admin)
    live = token(clean_db, admin)
    engage_for_release(clean_db, (method, path), admin.tenant_id)
    before = api_helpers.state(clean_db)

    for secret, says in ((revoked, "revoked"), (expired, "expired")):
        response = api_helpers.send(api, call, secret)
        assert says in assert_error(response, 401, "session_expired")["message"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert api_helpers.state(clean_db) == before

    # The same request with a live token goes through: the dead token alone was why it was refused.
    worked = api_helpers.send(api, call, live)
    assert worked.status_code in (200, 202), worked.text
    if changes_state((method, path)):
        assert api_helpers.state(clean_db) != before
    if (method, path) == DRAFT:
        _wait(api, worked.json()["status_url"], headers(live))


def test_health_needs_no_token_and_lists_every_check(api: TestClient) -> None:
    response = api.get("/health")
    body = response.json()
    assert response.status_code == 200 and body["healthy"] is True
    names = [c["name"] for c in body["checks"]]
    assert names == ["Database", "Job queue", "Workers", "Kill switch", "Circuit breakers"]
    assert all(c["ok"] and c["detail"] for c in body["checks"])


# -- tenants -------------------------------------------------------------------------------------------


def test_a_token_of_one_tenant_reads_nothing_of_another(api: TestClient, clean_db: Engine) -> None:
    a: Seeded = seed_drafted(clean_db)
    a_job = jobs.submit(
        clean_db,
        tenant_id=a.identity.tenant_id,
        user_id=a.identity.user_id,
        kind="draft",
        payload={"paragraph_id": a.paragraph_id},
        trace_id="tenant-a-draft",
    )
    user(clean_db, role="ops")  # an audit entry of tenant A (user_changed)
    b_tenant = second_tenant(clean_db)
    b_researcher = headers(token(clean_db, user(clean_db, role="researcher", tenant_id=b_tenant)))
    b_admin = headers(token(clean_db, user(clean_db, role="admin", tenant_id=b_tenant)))

    # A's manuscript, paragraph and job do not exist for B.
    search = {"manuscript_id": a.manuscript_id, "query": "nitrate leaching", "top_k": 5}
    assert_error(api.post("/api/v1/tools/search_corpus", json=search, headers=b_researcher), 404, "not_found")
    assert_error(
        api.post("/api/v1/paragraphs", json={"manuscript_id": a.manuscript_id, "brief": "x"}, headers=b_researcher),
        404,
    )
    assert_error(api.get(f"/api/v1/paragraphs/{a.paragraph_id}/jobs/{a_job}", headers=b_researcher), 404)
    # Even an admin of B reads B's audit log (and the workbench-wide entries) only.
    entries = api.get("/api/v1/audit?limit=200", headers=b_admin).json()["items"]
    assert entries and {e["tenant_id"] for e in entries} <= {b_tenant, None}
    # Naming A is refused, on every route.
    for path in ("/api/v1/audit", "/api/v1/tools"):
        assert (
            "another tenant"
            in assert_error(api.get(f"{path}?tenant_id={a.identity.tenant_id}", headers=b_admin), 403)["message"]
        )
    # The same search from A's own researcher finds A's facts, with their sources.
    a_researcher = headers(token(clean_db, user(clean_db, role="researcher")))
    found = api.post("/api/v1/tools/search_corpus", json=search, headers=a_researcher).json()["facts"]
    assert found and all(f["score"] > 0 and f["source"]["quote"] and f["source"]["page"] >= 1 for f in found)
    assert found[0]["source"]["document"].endswith(".pdf")


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS, ids=_ids(BODY_OPERATIONS))
def test_a_body_naming_another_tenant_is_refused_like_the_query_and_changes_nothing(
    api: TestClient, clean_db: Engine, method: str, path: str
) -> None:
    seeded = seed_drafted(clean_db)
    call = api_helpers.plausible_calls(clean_db, seeded)[(method, path)]
    assert call.body is not None
    b_tenant = second_tenant(clean_db)
    admin = token(clean_db, user(clean_db, role="admin"))  # every permission: only the tenant can be refused
    before = api_helpers.state(clean_db)

    in_query = api.request(method, call.url, params={"tenant_id": b_tenant}, json=call.body, headers=headers(admin))
    refused = assert_error(in_query, 403, "permission_denied")
    assert "another tenant" in refused["message"]
    for named in (b_tenant, str(b_tenant), None):
        in_body = api_helpers.send(api, call, admin, body={**call.body, "tenant_id": named})
        assert {k: v for k, v in assert_error(in_body, 403).items() if k != "request_id"} == {
            k: v for k, v in refused.items() if k != "request_id"
        }, named
    # Nothing happened: no paragraph or job, no routing version, no alert change, the switch released.
    assert api_helpers.state(clean_db) == before
    assert not controls.status(clean_db).kill_switch.engaged

    # The token's own tenant, named in the body, is the same request as naming none.
    own = api_helpers.send(api, call, admin, body={**call.body, "tenant_id": seeded.identity.tenant_id})
    assert own.status_code in (200, 202), own.text
    if changes_state((method, path)):
        assert api_helpers.state(clean_db) != before
    if (method, path) == DRAFT:
        _wait(api, own.json()["status_url"], headers(admin))


def test_a_body_naming_another_tenant_is_refused_where_the_route_reads_no_body(
    api: TestClient, clean_db: Engine
) -> None:
    a = user(clean_db, role="admin")
    engage_for_release(clean_db, RELEASE, a.tenant_id)
    b_tenant = second_tenant(clean_db)
    response = api.post(RELEASE[1], json={"tenant_id": b_tenant}, headers=headers(token(clean_db, a)))
    assert "another tenant" in assert_error(response, 403, "permission_denied")["message"]
    assert controls.status(clean_db).kill_switch.engaged


# -- roles ---------------------------------------------------------------------------------------------


def test_each_role_is_refused_what_it_may_not_do(api: TestClient, clean_db: Engine) -> None:
    researcher = headers(token(clean_db, user(clean_db, role="researcher")))
    ops_user = user(clean_db, role="ops")
    ops = headers(token(clean_db, ops_user))
    admin = headers(token(clean_db, user(clean_db, role="admin")))
    drill = {"reason": "drill"}

    assert "may not search the audit log" in assert_error(api.get("/api/v1/audit", headers=researcher), 403)["message"]
    assert_error(api.post("/admin/kill-switch", json=drill, headers=researcher), 403)
    refused = assert_error(api.post("/admin/kill-switch", json=drill, headers=ops), 403, "permission_denied")
    assert "Operations page" in refused["message"]
    assert_error(api.post("/admin/kill-switch/release", headers=ops), 403)
    assert_error(api.post("/api/v1/paragraphs", json={"manuscript_id": 1, "brief": "b"}, headers=ops), 403)
    assert api.get("/api/v1/audit", headers=ops).status_code == 200

    # The refusals are in the audit log; the switch never moved.
    with clean_db.connect() as connection:
        by = authz.cli_identity(ops_user.tenant_id)
        denied = audit.search(connection, viewer=by, event_types=[audit.PERMISSION_DENIED])
    assert any(e.actor_user_id == ops_user.user_id and "kill switch" in e.subject for e in denied)
    assert api.get("/health").json()["healthy"] is True

    engaged = api.post("/admin/kill-switch", json=drill, headers=admin)
    assert engaged.status_code == 200 and engaged.json()["engaged"] and engaged.json()["changed"]
    again = api.post("/admin/kill-switch", json=drill, headers=admin).json()
    assert again["engaged"] and not again["changed"]
    assert api.get("/health").status_code == 503
    assert_error(api.post("/admin/kill-switch", json={"reason": ""}, headers=admin), 422, "invalid_request")
    released = api.post("/admin/kill-switch/release", headers=admin).json()
    assert not released["engaged"] and released["changed"]


def test_a_prompt_engineer_is_refused_the_audit_log_alert_changes_and_the_kill_switch() -> None:
    engineer = authz.GRANTS[authz.PROMPT_ENGINEER]
    refused = {op for op, permission in api_helpers.PERMISSIONS.items() if permission and permission not in engineer}
    assert refused == {
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/ops/costs/alerts"),
        ("POST", "/admin/kill-switch"),
        RELEASE,
    }


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=_ids(OPERATIONS))
def test_a_prompt_engineer_token_does_what_the_role_may_and_nothing_else(
    api: TestClient, clean_db: Engine, method: str, path: str
) -> None:
    seeded = seed_drafted(clean_db)
    call = api_helpers.plausible_calls(clean_db, seeded)[(method, path)]
    engineer = user(clean_db, role="prompt_engineer")
    secret = token(clean_db, engineer)
    engage_for_release(clean_db, (method, path), engineer.tenant_id)
    before = api_helpers.state(clean_db, audit=False)
    permission = api_helpers.PERMISSIONS[(method, path)]

    response = api_helpers.send(api, call, secret)
    if permission is not None and not authz.allowed(engineer, permission):
        assert "prompt engineer" in assert_error(response, 403, "permission_denied")["message"]
        assert api_helpers.state(clean_db, audit=False) == before
        if path.startswith("/admin/kill-switch"):  # the API audits its kill-switch refusals
            with clean_db.connect() as connection:
                denied = audit.search(
                    connection,
                    viewer=authz.cli_identity(engineer.tenant_id),
                    event_types=[audit.PERMISSION_DENIED],
                )
            (entry,) = [e for e in denied if e.actor_user_id == engineer.user_id]
            assert entry.subject.startswith("api kill switch") and entry.details["role"] == authz.PROMPT_ENGINEER
        return

    assert response.status_code in (200, 202), response.text
    body = response.json()
    if changes_state((method, path)):
        assert api_helpers.state(clean_db, audit=False) != before
    if (method, path) == DRAFT:
        status = _wait(api, body["status_url"], headers(secret))
        assert status["state"] == jobs.SUCCEEDED and status["version"]["sentences"]
    if path == "/api/v1/ops/trajectories/{trace_id}":  # the role reads content; the view is audited
        assert body["content_hidden"] is False and any(s["content"] is not None for s in body["spans"])
        with clean_db.connect() as connection:
            viewed = audit.search(
                connection, viewer=authz.cli_identity(engineer.tenant_id), event_types=[audit.TRACE_VIEWED]
            )
        assert [e.actor_user_id for e in viewed] == [engineer.user_id]
    if path == "/api/v1/ops/routing/config" and method == "POST":
        assert body["version"] == 1 and body["actor"] and body["config"]["simple_below"] == 20.0


def test_a_token_never_acts_above_its_users_role_now(api: TestClient, clean_db: Engine) -> None:
    user(clean_db, role="admin", email="other-admin@example.org")  # the workbench keeps one admin
    who = user(clean_db, role="admin")
    secret = token(clean_db, who)
    with db.session_scope(clean_db) as s:
        accounts.set_role(s, by=authz.cli_identity(who.tenant_id), user_id=who.user_id, role="researcher")
    assert_error(api.post("/admin/kill-switch", json={"reason": "demoted"}, headers=headers(secret)), 403)


# -- rate limits and request ids -----------------------------------------------------------------------


def test_over_the_rate_a_token_gets_429_with_retry_after(api: TestClient, clean_db: Engine) -> None:
    slow = headers(token(clean_db, user(clean_db, role="researcher"), rate_per_minute=2))
    assert [api.get("/api/v1/tools", headers=slow).status_code for _ in range(2)] == [200, 200]
    limited = api.get("/api/v1/tools", headers=slow)
    assert "2 requests per minute" in assert_error(limited, 429, "rate_limited")["message"]
    assert int(limited.headers["retry-after"]) >= 1


def test_the_request_id_is_echoed_and_is_the_drafts_trace_id(api: TestClient, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    researcher = headers(token(clean_db, seeded.identity))
    assert api.get("/health", headers={"X-Request-ID": "deploy-check-0001"}).headers["x-request-id"] == (
        "deploy-check-0001"
    )
    assert len(api.get("/health", headers={"X-Request-ID": "bad id!"}).headers["x-request-id"]) == 32

    queued = api.post(
        "/api/v1/paragraphs",
        json={"manuscript_id": seeded.manuscript_id, "brief": "Biochar and nitrate leaching in sandy soils"},
        headers={**researcher, "X-Request-ID": "script-run-000042"},
    )
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["trace_id"] == "script-run-000042" == queued.headers["x-request-id"]
    job = jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=body["job_id"])
    assert job.trace_id == body["trace_id"]

    status = _wait(api, body["status_url"], researcher)
    assert status["state"] == jobs.SUCCEEDED and [j["kind"] for j in status["jobs"]] == ["draft", "verify_draft"]
    assert {j["id"] for j in status["jobs"]} >= {body["job_id"]} and status["trace_id"] == "script-run-000042"
    version = status["version"]
    assert version["status"] in {"verified", "needs_review"} and version["sentences"]
    assert all(s["verdict"] in {"supported", "unsupported"} and s["cites"] for s in version["sentences"])


def _wait(api: TestClient, url: str, auth: dict[str, str], timeout: float = 120.0) -> dict[str, Any]:
    """Poll the status URL until the draft has a final state (the in-process executor runs it)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = api.get(url, headers=auth).json()
        if status["state"] in jobs.FINAL and (status["version"] or status["state"] != jobs.SUCCEEDED):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


# -- the API tokens page -------------------------------------------------------------------------------


def test_the_tokens_page_shows_a_new_secret_once_and_revokes(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/api_tokens.py", role="ops")
    assert not at.code and any("No tokens yet" in i.value for i in at.info)
    at.text_input[0].input("uptime check")
    assert at.selectbox[0].options == ["researcher", "ops"], "up to the user's own role"
    at.selectbox[0].select("researcher")
    at.button[0].click().run()
    assert not at.exception, at.exception
    (secret,) = [c.value for c in at.code]
    assert secret.startswith(api_tokens.TOKEN_PREFIX)
    bearer = api_tokens.authenticate(clean_db, secret)
    assert bearer.identity.role == "researcher"

    at.run()  # shown only once
    assert not at.code
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["uptime check"] and secret not in table.to_string()

    at.selectbox(key="api_tokens_revoke_id").select(bearer.token_id)
    at.button[1].click().run()
    assert not at.exception, at.exception
    assert any("Revoked" in s.value for s in at.success)
    with pytest.raises(SessionExpiredError, match="revoked"):
        api_tokens.authenticate(clean_db, secret)


def test_an_admin_sees_everyones_tokens_on_the_page(make_app: MakeApp, clean_db: Engine) -> None:
    someone: Identity = user(clean_db, role="researcher")
    token(clean_db, someone)
    at = make_app("pages/api_tokens.py", role="admin")
    assert at.subheader[0].value == "Everyone's tokens"
    assert list(at.dataframe[0].value["User id"]) == [someone.user_id]
