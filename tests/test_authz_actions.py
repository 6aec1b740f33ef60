"""Each guarded action in core, tried by every role: a role without the permission gets
``PermissionDeniedError`` and nothing changes; a role with it makes the change, and the change is
in the audit log, written in the same transaction.

The roles come from ``authz.GRANTS``, so a change to the grants changes what is expected here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import Engine, select

from core import alerts, audit, authz, breakers, controls, crypto, db, keys, routing, tenant_budgets
from core.authz import Permission
from core.errors import PermissionDeniedError
from core.models import TrajectoryEvent
from core.settings import get_settings, reset_settings
from core.tenancy import Identity, create_tenant
from core.trajectories import get_trace
from tests.test_trajectories import SpanSpec, add_run
from tests.ui_helpers import MakeApp

BREAKER = breakers.provider_breaker("local")
OLD, NEW = crypto.new_key(), crypto.new_key()


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def as_role(ident: Identity, role: str) -> Identity:
    return replace(ident, role=role, name=f"{role.replace('_', ' ')} user")


def entries(engine: Engine, *types: str) -> list[audit.Entry]:
    with engine.connect() as connection:
        found = audit.search(connection, viewer=authz.cli_identity(0), event_types=types, limit=1000)
    return list(reversed(found))


# -- the actions: set up, act, and what "changed" means ---------------------------------------------


def _trip(engine: Engine, _ident: Identity, _mp: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    calls = settings.breaker_min_calls
    with engine.begin() as connection:
        breakers.record_attempts(connection, BREAKER, total=calls, failures=calls, trace_id="t", settings=settings)


def _kill_switch(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    return controls.set_kill_switch(engine, engaged=True, reason="incident 7", actor=actor)


def _engaged(engine: Engine, _ctx: Any) -> Any:
    return controls.status(engine).kill_switch.engaged


def _reset(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    return breakers.reset(engine, BREAKER, actor=actor)


def _closed(engine: Engine, _ctx: Any) -> Any:
    return {b.name: b.state for b in breakers.list_breakers(engine)}[BREAKER] == breakers.CLOSED


def _save_routing(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    settings = get_settings()
    config = routing.builtin_config(settings).model_copy(update={"simple_below": 20.0})
    with db.session_scope(engine) as s:
        return routing.save_config(
            s, tenant_id=actor.tenant_id, config=config, actor=actor, note="n", settings=settings
        )


def _routing_version(engine: Engine, ctx: Identity) -> Any:
    with db.session_scope(engine) as s:
        return routing.current_config(s, tenant_id=ctx.tenant_id, settings=get_settings()).version == 1


def _update_rule(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    with db.session_scope(engine) as s:
        return alerts.update_rule(s, tenant_id=actor.tenant_id, rule="budget", enabled=True, threshold=0.5, actor=actor)


def _rule_changed(engine: Engine, ctx: Identity) -> Any:
    with db.session_scope(engine) as s:
        return {r.name: r for r in alerts.rule_settings(s, tenant_id=ctx.tenant_id)}["budget"].updated_at is not None


def _set_budgets(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    with db.session_scope(engine) as s:
        return tenant_budgets.update_budgets(s, tenant_id=actor.tenant_id, values={"writer": 5_000}, actor=actor)


def _budgets_changed(engine: Engine, ctx: Identity) -> Any:
    with db.session_scope(engine) as s:
        return any(b.own is not None for b in tenant_budgets.budget_settings(s, tenant_id=ctx.tenant_id))


def _sealed_run(engine: Engine, ident: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session_scope(engine) as s:
        old = crypto.KeyRing(crypto.parse_ring(f"old:{OLD}"))
        add_run(s, tenant_id=ident.tenant_id, spans=[SpanSpec("writer", content={"prompt": "p"})], sealer=old)
    monkeypatch.setenv("WORKBENCH_ENCRYPTION_KEYS", f"new:{NEW},old:{OLD}")
    reset_settings()


def _rotate(engine: Engine, actor: Identity, _ctx: Any) -> Any:
    return keys.rotate(engine, get_settings(), actor=actor)


def _rotated(engine: Engine, _ctx: Any) -> Any:
    with engine.connect() as connection:
        return set(connection.scalars(select(TrajectoryEvent.key_id))) == {"new"}


@dataclass(frozen=True)
class Action:
    permission: Permission
    event_type: str
    act: Callable[[Engine, Identity, Any], Any]
    changed: Callable[[Engine, Any], Any]
    setup: Callable[[Engine, Identity, pytest.MonkeyPatch], None] = lambda e, i, m: None


ACTIONS = {
    "kill switch": Action(Permission.KILL_SWITCH, audit.KILL_SWITCH, _kill_switch, _engaged),
    "breaker reset": Action(Permission.RESET_BREAKERS, audit.BREAKER_RESET, _reset, _closed, _trip),
    "routing": Action(Permission.CHANGE_ROUTING, audit.ROUTING_CHANGED, _save_routing, _routing_version),
    "alert rule": Action(Permission.MANAGE_ALERTS, audit.ALERT_RULE_CHANGED, _update_rule, _rule_changed),
    "token budgets": Action(Permission.MANAGE_BUDGETS, audit.BUDGET_CHANGED, _set_budgets, _budgets_changed),
    "key rotation": Action(Permission.MANAGE_KEYS, audit.KEY_ROTATION, _rotate, _rotated, _sealed_run),
}


@pytest.mark.parametrize("role", authz.ROLES)
@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_role_may_do_only_what_it_is_granted(
    clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch, name: str, role: str
) -> None:
    action, actor = ACTIONS[name], as_role(identity, role)
    action.setup(clean_db, identity, monkeypatch)
    assert not action.changed(clean_db, identity)
    if action.permission not in authz.GRANTS[role]:
        with pytest.raises(PermissionDeniedError, match=f"Your role \\({role.replace('_', ' ')}\\) may not"):
            action.act(clean_db, actor, identity)
        assert not action.changed(clean_db, identity), "nothing changed"
        assert entries(clean_db, action.event_type) == []
        return
    action.act(clean_db, actor, identity)
    assert action.changed(clean_db, identity)
    recorded = entries(clean_db, action.event_type)
    assert recorded and all(e.actor == actor.name and e.actor_user_id == identity.user_id for e in recorded)
    with clean_db.connect() as connection:
        assert audit.verify(connection).intact


def test_refusals_of_actions_that_own_their_transaction_are_audited(clean_db: Engine, identity: Identity) -> None:
    researcher = as_role(identity, authz.RESEARCHER)
    with pytest.raises(PermissionDeniedError):
        controls.set_kill_switch(clean_db, engaged=True, reason="x", actor=researcher)
    with pytest.raises(PermissionDeniedError):
        breakers.reset(clean_db, BREAKER, actor=researcher)
    denied = entries(clean_db, audit.PERMISSION_DENIED)
    assert [(e.details["permission"], e.subject, e.actor) for e in denied] == [
        ("kill_switch", "engage", "researcher user"),
        ("reset_breakers", BREAKER, "researcher user"),
    ]
    assert all(e.tenant_id == identity.tenant_id for e in denied)


def test_audit_entries_carry_what_changed(
    clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = as_role(identity, authz.ADMIN)
    _kill_switch(clean_db, admin, None)
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=admin)
    assert not controls.set_kill_switch(clean_db, engaged=False, reason="", actor=admin), "no change, no entry"
    switch = entries(clean_db, audit.KILL_SWITCH)
    assert [(e.tenant_id, e.subject, e.details) for e in switch] == [
        (None, "engaged", {"engaged": True, "reason": "incident 7"}),
        (None, "released", {"engaged": False, "reason": ""}),
    ]

    _trip(clean_db, identity, monkeypatch)
    _reset(clean_db, admin, None)
    [reset] = entries(clean_db, audit.BREAKER_RESET)
    assert reset.subject == BREAKER and reset.details["from"] == breakers.OPEN and reset.details["to"] == "closed"

    before = routing.builtin_config(get_settings()).simple_below
    _save_routing(clean_db, admin, None)
    [changed] = entries(clean_db, audit.ROUTING_CHANGED)
    assert changed.tenant_id == identity.tenant_id and changed.subject == "routing version 1"
    assert changed.details["changes"] == [f"simple below: {before:g} → 20"] and changed.details["note"] == "n"

    with db.session_scope(clean_db) as s:
        default = {r.name: r for r in alerts.rule_settings(s, tenant_id=identity.tenant_id)}["budget"].threshold
    _update_rule(clean_db, admin, None)
    [rule] = entries(clean_db, audit.ALERT_RULE_CHANGED)
    assert rule.subject == "budget" and rule.tenant_id == identity.tenant_id
    assert (rule.details["before"]["threshold"], rule.details["after"]["threshold"]) == (default, 0.5)

    _sealed_run(clean_db, identity, monkeypatch)
    _rotate(clean_db, admin, None)
    started, finished = entries(clean_db, audit.KEY_ROTATION)
    assert (started.subject, finished.subject) == ("started", "finished")
    assert finished.details["rotated"]["trajectory_events"] == 1 and finished.details["remaining"] == 0
    assert finished.details["active_key"] == "new" and NEW not in str(finished.details)


def test_changes_in_another_tenant_are_refused_even_to_a_permitted_role(clean_db: Engine, identity: Identity) -> None:
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="lab-b", name="Lab B")
    ops_b = as_role(other, authz.OPS)
    settings = get_settings()
    with db.session_scope(clean_db) as s, pytest.raises(PermissionDeniedError, match="own workspace"):
        routing.save_config(
            s,
            tenant_id=identity.tenant_id,
            config=routing.builtin_config(settings).model_copy(update={"simple_below": 20.0}),
            actor=ops_b,
            note="",
            settings=settings,
        )
    with db.session_scope(clean_db) as s, pytest.raises(PermissionDeniedError, match="own workspace"):
        alerts.update_rule(s, tenant_id=identity.tenant_id, rule="budget", enabled=True, threshold=0.5, actor=ops_b)
    assert not _routing_version(clean_db, identity) and not _rule_changed(clean_db, identity)


# -- reading traces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", authz.ROLES)
def test_trace_content_by_role_and_each_view_audited(clean_db: Engine, identity: Identity, role: str) -> None:
    with db.session_scope(clean_db) as s:
        trace_id = add_run(s, tenant_id=identity.tenant_id, spans=[SpanSpec("writer", content={"prompt": "secret"})])
    viewer, ring = as_role(identity, role), crypto.key_ring(get_settings())
    if Permission.VIEW_TRACES not in authz.GRANTS[role]:
        with db.session_scope(clean_db) as s, pytest.raises(PermissionDeniedError, match="see trajectories"):
            get_trace(s, viewer=viewer, trace_id=trace_id, ring=ring)
        assert entries(clean_db, audit.TRACE_VIEWED) == []
        return
    for _ in range(2):
        with db.session_scope(clean_db) as s:
            trace = get_trace(s, viewer=viewer, trace_id=trace_id, ring=ring)
    readable = Permission.VIEW_TRACE_CONTENT in authz.GRANTS[role]
    assert trace.content_hidden is not readable
    assert trace.spans[0].content == ({"prompt": "secret"} if readable else None)
    viewed = entries(clean_db, audit.TRACE_VIEWED)
    assert [(e.subject, e.actor, e.tenant_id) for e in viewed] == (
        [(trace_id, viewer.name, identity.tenant_id)] * 2 if readable else []
    )
    assert "secret" not in str([e.details for e in viewed])


def test_trace_content_is_hidden_from_a_role_without_the_content_permission(
    clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No built-in role may list traces but not read them; the grants are one table, so cut one.
    monkeypatch.setitem(authz.GRANTS, authz.OPS, authz.GRANTS[authz.OPS] - {Permission.VIEW_TRACE_CONTENT})
    with db.session_scope(clean_db) as s:
        trace_id = add_run(s, tenant_id=identity.tenant_id, spans=[SpanSpec("writer", content={"prompt": "secret"})])
    with db.session_scope(clean_db) as s:
        trace = get_trace(
            s, viewer=as_role(identity, authz.OPS), trace_id=trace_id, ring=crypto.key_ring(get_settings())
        )
    assert trace.content_hidden and trace.version is None
    assert [(sp.content, sp.content_error, sp.has_content) for sp in trace.spans] == [(None, None, True)]
    assert entries(clean_db, audit.TRACE_VIEWED) == []


# -- the pages hide what a role may not do ------------------------------------------------------------------


def test_operations_page_turns_off_the_controls_a_role_lacks(
    make_app: MakeApp, clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trip(clean_db, authz.cli_identity(0), monkeypatch)
    at = make_app("pages/operations.py", role="ops")
    assert not button(at, "FormSubmitter:operations_engage-Engage kill switch").disabled
    assert [b.label for b in at.button if b.label == f"Reset {BREAKER}"]

    # The same page for a role cut down to watching: the buttons are off or gone, and say why.
    watching = {Permission.KILL_SWITCH, Permission.RESET_BREAKERS, Permission.MANAGE_ALERTS}
    monkeypatch.setitem(authz.GRANTS, authz.OPS, authz.GRANTS[authz.OPS] - watching)
    at = make_app("pages/operations.py", role="ops")
    assert not at.exception, at.exception
    assert button(at, "FormSubmitter:operations_engage-Engage kill switch").disabled
    assert button(at, "FormSubmitter:operations_alert_form-Save rule").disabled
    assert not [b for b in at.button if b.label == f"Reset {BREAKER}"]
    captions = " ".join(c.value for c in at.caption)
    assert "may not engage the kill switch" in captions and "may see the rules but not change them" in captions


def test_trajectories_page_hides_content_from_a_role_without_it(
    make_app: MakeApp, clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.session_scope(clean_db) as s:
        add_run(s, tenant_id=identity.tenant_id, spans=[SpanSpec("writer", content={"prompt": "secret brief"})])
    monkeypatch.setitem(authz.GRANTS, authz.OPS, authz.GRANTS[authz.OPS] - {Permission.VIEW_TRACE_CONTENT})
    at = make_app("pages/trajectories.py", role="ops")
    assert not at.exception, at.exception
    assert any("Content hidden for your role" in c.value for c in at.caption)
    assert "secret brief" not in str(at.get("json")) and entries(clean_db, audit.TRACE_VIEWED) == []


def button(at: Any, key: str) -> Any:
    [found] = [b for b in at.button if b.key == key] or [None]
    assert found is not None, f"no button {key!r}; have {[b.key for b in at.button]}"
    return found
