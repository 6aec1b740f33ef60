"""Prompts (prompt engineers): versions and their diff, deployments with the canary, golden runs of
two versions, two models (or any two runs) side by side, and the history of golden runs."""

from collections.abc import Mapping

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core import deployments, golden_results, model_choices, prompt_diff, prompts_view, ui
from core.authz import Permission
from core.errors import WorkbenchError
from core.golden_runner import run_golden
from core.prompts import AGENTS
from core.providers import get_provider
from core.settings import get_settings

st.title("Prompts")
ident = ui.identity()
manage = ui.allowed(Permission.MANAGE_PROMPTS)
st.caption(
    "A locked version never changes: an edit is a new version file, pinned with `python -m core prompts lock`. "
    "A version serves only after a passing golden run of that exact file (the release gate)."
)
agent = st.selectbox("Agent", AGENTS, key="prompts_agent")
described = prompt_diff.describe(agent)
names = [v.version for v in described]
with ui.session() as s:
    status = deployments.status(s)
    serving = next((d for d in status if d.agent == agent), None)
    gates = {v.version: deployments.gate_check(s, agent=agent, version=v.version) for v in described if not v.error}
    report = deployments.canary_report(s, agent=agent) if serving and serving.canary else None
    runs = golden_results.list_runs(s, finished_only=True)
    latest = golden_results.latest_for(s, agent=agent, versions={v.version: v.sha256 for v in described})
    points = golden_results.history(s, agent=agent)
    provider = get_provider(get_settings().provider)
    active = next((v for v in described if serving and v.version == serving.active_version and not v.error), None)
    profile = str(active.params.get("model_profile", "default")) if active else "default"
    choices = model_choices.model_choices(s, agent=agent, provider=provider, profile=profile)

# -- versions and their diff ----------------------------------------------------------------------

st.subheader("Versions")
for broken in (v for v in described if v.error):
    st.error(ui.md_escape(broken.error), icon=":material/lock:")
st.dataframe(prompts_view.version_rows(described, gates, serving), hide_index=True, key="prompts_versions")
st.markdown("**Front-matter parameters** (what the `local` provider and the gateway read)")
st.dataframe(prompt_diff.parameter_rows(described), hide_index=True, key="prompts_params")
if len(names) > 1:
    left, right = st.columns(2)
    old = left.selectbox("Diff from", names, index=len(names) - 2, key=f"prompts_{agent}_diff_old")
    new = right.selectbox("to", names, index=len(names) - 1, key=f"prompts_{agent}_diff_new")
    try:
        diff = prompt_diff.unified_diff(agent, old, new)
    except WorkbenchError as error:
        st.error(ui.md_escape(error))
    else:
        st.code(diff or "The two versions are identical.", language="diff")
else:
    st.caption(f"{agent} has one version so far; a second one shows its diff here.")

# -- deployments: active, canary, actions ---------------------------------------------------------

st.subheader("Deployments")
st.dataframe(prompts_view.deployment_rows(status), hide_index=True, key="prompts_deployments")
if report is not None:
    st.markdown(f"**Canary of {ui.md_escape(agent)} against its baseline** · verdict: **{report.verdict}**")
    st.dataframe(prompts_view.canary_rows(report), hide_index=True, key="prompts_canary_report")
    st.caption(ui.md_escape(report.reason))
if manage:
    with st.container(border=True):
        pick, share_col, why_col = st.columns([1, 1, 2])
        version = pick.selectbox("Version", names, index=len(names) - 1, key=f"prompts_{agent}_deploy_version")
        share = share_col.slider("Canary share", 0.05, 0.5, 0.1, step=0.05, key="prompts_canary_share")
        reason = why_col.text_input("Reason (kept in the audit log)", key="prompts_deploy_reason")
        with st.container(horizontal=True):
            if st.button(f"Activate {version}", key="prompts_activate", icon=":material/rocket_launch:"):
                ui.act(lambda s: deployments.activate(s, by=ident, agent=agent, version=version, reason=reason))
            if st.button(f"Start canary of {version}", key="prompts_canary", icon=":material/science:"):
                ui.act(
                    lambda s: deployments.start_canary(
                        s, by=ident, agent=agent, version=version, share=share, reason=reason
                    )
                )
            if st.button("Promote the canary", key="prompts_promote", icon=":material/upgrade:"):
                ui.act(lambda s: deployments.promote(s, by=ident, agent=agent, reason=reason))
            if st.button("Roll back", key="prompts_rollback", icon=":material/undo:"):
                ui.act(lambda s: deployments.rollback(s, by=ident, agent=agent, reason=reason))
        st.caption("Roll back ends a canary, or returns to the previous active version; a reason is required.")

# -- golden runs side by side ---------------------------------------------------------------------


def run_button(
    side: DeltaGenerator, key: str, what: str, prompt_pins: Mapping[str, str], model_pins: Mapping[str, str]
) -> None:
    """A button that runs the golden set with these pins and shows the page again with its result."""
    if not side.button(f"Run golden set for {what}", key=key, icon=":material/play_arrow:"):
        return
    try:
        with st.spinner(f"Running the golden set with {what}…"):
            run_golden(ui.engine(), prompt_pins=prompt_pins, model_pins=model_pins, label=what, triggered_by=ui.actor())
    except WorkbenchError as error:
        side.error(ui.md_escape(error))
    else:
        st.rerun()


st.subheader("Golden runs side by side")
two_versions, two_models = "Two versions of this agent", "Two models of this agent"
modes = [two_versions, two_models, "Any two golden runs"]
mode = st.radio("Compare", modes, horizontal=True, key="prompts_compare_mode")
titles = {r.title: r for r in runs}
by_model = {c.model: c for c in choices}
latest_models: dict[str, golden_results.RunSummary | None] = {}
if mode == two_models:
    for note in model_choices.notes(agent, active, provider.name, choices, ui.md_escape):
        st.caption(note)
    if active is not None:
        latest_models = model_choices.latest_by_model(
            runs, agent=agent, version=active.version, sha256=active.sha256, models=list(by_model)
        )
# Two models to pick from, or none side by side: one model against itself compares nothing.
comparable = mode != two_models or (active is not None and len(choices) > 1)
sides = list(zip(st.columns(2), ("A", "B"), (2, 1), strict=True)) if comparable else []
picked: list[golden_results.RunSummary | None] = [None, None]
for n, (side, label, back) in enumerate(sides):
    run: golden_results.RunSummary | None
    if mode == two_versions:
        default = max(len(names) - back, 0)
        choice = side.selectbox(f"Version {label}", names, index=default, key=f"prompts_{agent}_side_{label}_version")
        run = latest[choice]
        if run is None:
            side.info(f"{ui.md_escape(agent)} {ui.md_escape(choice)} has no finished golden run of this file yet.")
        if manage:
            run_button(side, f"prompts_run_{label}", f"{agent} {choice}", {agent: choice}, {})
    elif mode == two_models and active is not None:
        model = side.selectbox(
            f"Model {label}",
            list(by_model),
            index=min(n, len(by_model) - 1),
            format_func=lambda m: by_model[m].label,
            key=f"prompts_{agent}_side_{label}_model",
        )
        if by_model[model].warning:
            side.warning(ui.md_escape(by_model[model].warning), icon=":material/warning:")
        run = latest_models[model]
        if run is None:
            side.info(f"{ui.md_escape(model_choices.run_label(agent, active.version, model))} has no golden run yet.")
        if manage:
            what = model_choices.run_label(agent, active.version, model)
            run_button(side, f"prompts_run_model_{label}", what, {agent: active.version}, {agent: model})
    else:
        chosen = side.selectbox(
            f"Run {label}",
            list(titles),
            index=min(back - 1, len(titles) - 1) if titles else None,
            key=f"prompts_side_{label}_run",
        )
        run = titles.get(chosen) if chosen else None
    if run is not None:
        side.caption(f"{ui.md_escape(run.title)}  \nModels: {ui.md_escape(prompts_view.models_label(run.models))}")
    picked[n] = run

run_a, run_b = picked
if run_a is not None and run_b is not None:
    with ui.session() as s:
        comparison = golden_results.compare(
            golden_results.get_run(s, run_id=run_a.id), golden_results.get_run(s, run_id=run_b.id)
        )
    st.dataframe(prompts_view.metrics_styler(comparison), hide_index=True, key="prompts_metrics")
    if worse := prompts_view.regressions(comparison.metrics):
        st.warning(f"B is worse than A on: {ui.md_escape(', '.join(worse))}.", icon=":material/trending_down:")
    only_differ = st.toggle("Only cases whose outcome or text differs", key="prompts_only_differ")
    for pair in comparison.cases:
        if only_differ and not pair.differs:
            continue
        with st.container(border=True):
            st.markdown(f"**Case {ui.md_escape(pair.case_id)}**")
            for column, case, label in zip(st.columns(2), (pair.a, pair.b), ("A", "B"), strict=True):
                column.markdown(f"**{label}** · {prompts_view.case_heading(case)}")
                if missed := prompts_view.failed_expectations(case, ui.md_escape):
                    column.markdown(missed)
                for n, sentence in enumerate(case.sentences if case else [], start=1):
                    column.markdown(prompts_view.sentence_line(n, sentence, ui.md_escape))
                if checks := prompts_view.sentence_checks(case):
                    column.caption("Sentences given to the Verifier")
                    for check in checks:
                        column.markdown(prompts_view.check_line(check, ui.md_escape))
elif not runs:
    st.caption("No golden run yet: run one here or with `python -m core golden run`.")

# -- history --------------------------------------------------------------------------------------

st.subheader("History of golden runs")
if points:
    st.plotly_chart(prompts_view.history_figure(points), key="prompts_history")
else:
    st.caption("Golden runs appear here over time, one colour per version of this agent.")
