"""Operations (ops, admins): alerts and SLOs, token budgets, generation controls, what runs where, queues, workers
and jobs."""

import streamlit as st

from core import alerts, breakers, controls, health, jobs, runbook, slo, tenant_budgets, ui, worker_records
from core.authz import Permission
from core.db import schema_is_current
from core.ui_queries import job_rows, job_state_counts, recent_control_events, transition_rows

st.title("Operations")
st.caption("The model registry, the audit log and users and tenants have pages of their own in this section.")

# Health -----------------------------------------------------------------------------------------
st.subheader("Health")
checks = health.report(ui.engine()).checks
st.dataframe(
    [{"Check": c.name, "OK": c.ok, "Detail": c.detail, "Latency (ms)": c.latency_ms} for c in checks],
    hide_index=True,
    column_config={"Detail": st.column_config.TextColumn(width="large")},
)

ident = ui.identity()
actor = ui.actor()
status = ui.generation_status()
switch = status.kill_switch
AT = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")  # times are UTC

# Alerts and SLOs --------------------------------------------------------------------------------
st.subheader("Alerts and SLOs")
with ui.session() as s:
    alerts.evaluate(s, tenant_id=ident.tenant_id)  # on every load too (workers do it every minute): cheap
with ui.session() as s:
    firing = alerts.active_alerts(s, tenant_id=ident.tenant_id)
    history = alerts.event_rows(alerts.alert_history(s, tenant_id=ident.tenant_id, limit=50))
    objectives = slo.slo_status(s, tenant_id=ident.tenant_id)
    rules = {r.name: r for r in alerts.rule_settings(s, tenant_id=ident.tenant_id)}
for event in firing:
    title = alerts.RULES[event.rule].title if event.rule in alerts.RULES else event.rule
    shout = st.error if event.severity == alerts.CRITICAL else st.warning
    shout(f"**{ui.md_escape(title)}** firing since {ui.when(event.fired_at)}: {ui.md_escape(event.message)}")
    procedure = runbook.procedure_for_alert(event.rule)
    if procedure is not None:  # the Runbook page opens with this procedure expanded
        st.page_link(
            "pages/runbook.py",
            label=f"What to do: {ui.md_escape(procedure.title)}",
            icon=":material/menu_book:",
            query_params={"procedure": procedure.anchor},
        )
if not firing:
    st.caption("No alert is firing for this workspace.")

st.markdown(f"**Service level objectives** (last {slo.SLO_WINDOW.days} days)")
for column, o in zip(st.columns(len(objectives)), objectives, strict=True):
    color = {"met": "green", "not met": "red"}.get(o.verdict, "gray")
    column.metric(o.title, o.shown, f"{o.verdict} · target {o.objective}", color, delta_arrow="off", help=o.detail)

st.markdown("**Alert history**")
if history:
    st.dataframe(history, hide_index=True, column_config={"Fired": AT, "Last seen": AT, "Resolved": AT})
else:
    st.caption("No alert has fired yet.")

st.markdown("**Alert rules of this workspace**")
name = st.selectbox("Rule", list(rules), format_func=lambda n: rules[n].rule.title, key="operations_alert_rule")
chosen, rule = rules[name], rules[name].rule
changed = f"Changed by {ui.md_escape(chosen.actor)} on {ui.when(chosen.updated_at)}." if chosen.updated_at else ""
with st.form("operations_alert_form"):
    st.caption(
        f"{ui.md_escape(rule.description)} Window: {rule.window}; fires {rule.relation} the threshold "
        f"({rule.severity}). {changed}"
    )
    enabled = st.checkbox("Enabled", value=chosen.enabled, key=f"operations_alert_enabled_{name}")
    threshold = st.number_input(
        f"Threshold ({rule.unit})",
        value=chosen.threshold * rule.scale,
        format={"USD": "%.4f", "%": "%.1f"}.get(rule.unit, "%.0f"),
        key=f"operations_alert_threshold_{name}",
    )
    params = {
        key: st.number_input(param.label, value=chosen.params[key], key=f"operations_alert_{name}_{key}")
        for key, param in rule.params.items()
    }
    may_alert = ui.allowed(Permission.MANAGE_ALERTS)
    if not may_alert:
        st.caption("Your role may see the rules but not change them.")
    if st.form_submit_button("Save rule", icon=":material/save:", disabled=not may_alert):
        ui.act(
            lambda s: alerts.update_rule(
                s,
                tenant_id=ident.tenant_id,
                rule=name,
                enabled=enabled,
                threshold=threshold / rule.scale,
                params=params,
                actor=ident,
            )
        )

# Token budgets ----------------------------------------------------------------------------------
st.subheader("Token budgets")
st.caption(
    "Tokens one call, or one whole paragraph run, of this workspace may use. Each call is counted before it is "
    "sent and one over its budget is never sent. Leave a field empty for the environment's default; the next "
    "run uses a change."
)
with ui.session() as s:
    budgets = tenant_budgets.budget_settings(s, tenant_id=ident.tenant_id)
with st.form("operations_budgets"):
    given = {
        b.budget.key: st.number_input(
            f"{b.budget.label} (default {b.default:,}, {b.budget.variable})",
            value=b.own,
            min_value=tenant_budgets.MINIMUM_TOKENS,
            max_value=tenant_budgets.MAXIMUM_TOKENS,
            step=100,
            placeholder=f"default: {b.default:,}",
            key=f"operations_budget_{b.budget.key}",
        )
        for b in budgets
    }
    may_budget = ui.allowed(Permission.MANAGE_BUDGETS)
    if not may_budget:
        st.caption("Your role may see the budgets but not change them.")
    if st.form_submit_button("Save budgets", icon=":material/save:", disabled=not may_budget):
        ui.act(
            lambda s: tenant_budgets.update_budgets(
                s,
                tenant_id=ident.tenant_id,
                values={key: None if value is None else int(value) for key, value in given.items()},
                actor=ident,
            )
        )

# Generation controls ----------------------------------------------------------------------------
st.subheader("Generation controls")
st.caption(
    "The kill switch stops every model call and every new upload, draft, edit and re-verification at once, "
    "for every workspace. Circuit breakers do the same on their own when a provider fails, verification "
    "collapses or a paragraph costs too much. Stored and verified work stays readable either way."
)
st.markdown("**Kill switch**")
if switch.engaged:
    st.caption(
        f"Engaged by {ui.md_escape(switch.actor or 'ops')} on {ui.when(switch.changed_at)}: "
        f"{ui.md_escape(switch.reason)}"
    )
    if not ui.allowed(Permission.KILL_SWITCH):
        st.caption("Your role may not release the kill switch; ops and admins may.")
    elif st.button("Release kill switch", key="operations_release", type="primary", icon=":material/play_arrow:"):
        ui.control_action(
            lambda e: controls.set_kill_switch(e, engaged=False, reason="", actor=ident),
            unchanged="The kill switch was already released by someone else.",
        )
else:
    last = f" by {ui.md_escape(switch.actor)} on {ui.when(switch.changed_at)}" if switch.changed_at else ""
    st.caption(f"Released{last}: generation runs normally.")
    with st.form("operations_engage", clear_on_submit=True):
        reason = st.text_input(
            "Reason (shown to everyone on every page)",
            key="operations_reason",
            placeholder="e.g. provider bills look wrong, investigating",
        )
        may_switch = ui.allowed(Permission.KILL_SWITCH)
        st.caption(
            f"Engaged as {ui.md_escape(actor)}."
            if may_switch
            else "Your role may not engage the kill switch; ops and admins may."
        )
        if st.form_submit_button(
            "Engage kill switch", type="primary", icon=":material/block:", disabled=not may_switch
        ):
            ui.control_action(
                lambda e: controls.set_kill_switch(e, engaged=True, reason=reason, actor=ident),
                unchanged="The kill switch was already engaged by someone else.",
            )

st.markdown("**Circuit breakers**")
known = breakers.list_breakers(ui.engine())
if known:
    st.dataframe(
        [
            {
                "Breaker": b.name,
                "State": b.state.replace("_", "-"),
                "Reason": b.reason,
                "Opened at": b.opened_at,
                "Window failures": b.window_failures,
                "Window total": b.window_total,
            }
            for b in known
        ],
        hide_index=True,
    )
    st.caption(
        "Window: failed attempts (provider), unsupported sentences (verification) out of all counted in the "
        "current window. Reset a breaker once its cause is fixed; otherwise a trial run after the cooldown decides."
    )
else:
    st.caption("No breaker has been used yet; each appears with the first call it guards.")
may_reset = ui.allowed(Permission.RESET_BREAKERS)
for b in known:
    if (
        may_reset
        and b.blocking
        and st.button(f"Reset {b.name}", key=f"operations_reset_{b.name}", icon=":material/restart_alt:")
    ):
        ui.control_action(
            lambda e, name=b.name: breakers.reset(e, name, actor=ident),
            unchanged=f"Breaker {ui.md_escape(b.name)} was already closed.",
        )

st.markdown("**Recent control events**")
with ui.session() as s:
    events = [
        {
            "At": e.at,
            "Control": e.control,
            "From": e.from_state or "",
            "To": e.to_state,
            "Reason": e.reason,
            "Actor": e.actor,
        }
        for e in recent_control_events(s, limit=50)
    ]
if events:
    st.dataframe(events, hide_index=True)
else:
    st.caption("No kill-switch or breaker changes recorded yet.")

# Runtime and jobs -------------------------------------------------------------------------------
st.subheader("Runtime")
runtime = ui.runtime_status() | {
    "Schema": "at head" if schema_is_current(ui.engine()) else "behind: run python -m core migrate"
}
st.dataframe([{"Component": k, "Mode": v} for k, v in runtime.items()], hide_index=True, width=640)


@st.fragment(run_every=2.0)
def live_jobs() -> None:
    """Queues, workers and this workspace's jobs, refreshed every 2 s without reloading the page."""
    st.subheader("Queues")
    st.dataframe(
        [
            {"Queue": q.queue, "Waiting": q.waiting, "Running": q.running, "Oldest waiting (s)": q.oldest_waiting_s}
            for q in jobs.queue_stats(ui.engine())
        ],
        hide_index=True,
        column_config={"Oldest waiting (s)": st.column_config.NumberColumn(format="%.0f")},
    )
    st.subheader("Workers")
    workers = worker_records.list_workers(ui.engine())
    if workers:
        st.dataframe(
            [
                {
                    "Name": w.name,
                    "Kind": w.kind,
                    "Host": w.host,
                    "Queues": ", ".join(w.queues),
                    "Alive": w.alive,
                    "State": w.state,
                    "Current job": w.current_job_id or "",
                    "Last heartbeat": w.heartbeat_at,
                }
                for w in workers
            ],
            hide_index=True,
            column_config={"Last heartbeat": AT},
        )
    else:
        st.caption("No worker has reported yet: start `python -m workers`, or queue a job to start the in-process one.")

    st.subheader("Recent jobs")
    with ui.session() as s:
        counts = job_state_counts(s, tenant_id=ident.tenant_id)
        rows = job_rows(s, tenant_id=ident.tenant_id, limit=50)
    if not rows:
        st.caption("No jobs recorded yet for this workspace.")
        return
    st.caption(" · ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "Created": AT,
            "Finished": AT,
            "Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0),
        },
    )
    labels = {r["Job"]: f"{r['Kind']} · {r['State']} · {r['Created']:%Y-%m-%d %H:%M:%S} · {r['Job'][:8]}" for r in rows}
    job_id = st.selectbox("Transitions of job", list(labels), format_func=labels.__getitem__, key="operations_job")
    with ui.session() as s:
        transitions = transition_rows(s, tenant_id=ident.tenant_id, job_id=job_id)
    st.dataframe(
        transitions, hide_index=True, column_config={"At": AT, "Reason": st.column_config.TextColumn(width="large")}
    )


live_jobs()
