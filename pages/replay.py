"""Replay (prompt engineers, developers): a recorded run's agent calls sent again under another prompt
version or model, each call's original and replayed answer side by side."""

from typing import Any

import pandas as pd
import streamlit as st

from core import crypto, replay, ui
from core.charts import usd
from core.errors import WorkbenchError
from core.providers import get_provider
from core.settings import get_settings
from core.trajectories import list_trajectories

RECENT_RUNS = 50

st.title("Replay")
ident = ui.identity()
settings = get_settings()
st.caption(
    "Send a recorded run's agent calls again, each on the input it recorded (a Verifier call checks the sentence "
    "the original run gave it), under another prompt version or model. Nothing stored changes: the replay is a "
    "run of its own (kind replay), and reading the recorded content is audited. A call replayed as it was may be "
    "answered from this workspace's cache."
)

# Pick a run: one of the latest, or the one a ?trace= link names (a link wins over the last pick).
with ui.session() as s:
    recent = list_trajectories(s, tenant_id=ident.tenant_id, page_size=RECENT_RUNS).rows
labels = {t.trace_id: f"{ui.when(t.started_at)} · {t.kind} · {t.status} · {t.trace_id[:12]}" for t in recent}
linked = st.query_params.get("trace") or ""
fresh = bool(linked) and linked != st.session_state.get("replay_linked")
choices = list(labels)
if linked and linked not in labels:
    choices.insert(0, linked)
if not choices:
    st.caption("No runs yet: draft a paragraph on the Write page, then replay its run here.")
    st.stop()
if fresh:
    st.session_state["replay_trace"] = linked
chosen = st.selectbox("Run", choices, format_func=lambda t: labels.get(t, f"{t} (from the link)"), key="replay_trace")
st.query_params["trace"] = st.session_state["replay_linked"] = chosen

try:
    with ui.session() as s:
        agents = replay.recorded_agents(s, viewer=ident, trace_id=chosen)
        models = replay.pinnable_models(s.connection(), provider=get_provider(settings.provider).name)
except WorkbenchError as exc:
    st.error(ui.md_escape(exc))
    st.stop()
if not agents:
    st.caption("This run made no agent calls, so there is nothing to replay.")
    st.stop()
versions = replay.prompt_versions(settings.prompts_dir)

st.subheader("Replay with")
prompt_pins: dict[str, str] = {}
model_pins: dict[str, str] = {}
for a in agents:
    name, version_col, model_col = st.columns([1, 2, 2])
    name.text(f"{a.agent} · {a.calls} call{'s' if a.calls != 1 else ''}")
    version_choices = list(dict.fromkeys([*a.prompt_versions, *versions.get(a.agent, [])]))
    version = version_col.selectbox(
        f"{a.agent} prompt version", version_choices, key=f"replay_version_{a.agent}",
        help=f"Recorded: {', '.join(a.prompt_versions)}",
    )  # fmt: skip
    model = model_col.selectbox(
        f"{a.agent} model", list(dict.fromkeys([*a.models, *models])), key=f"replay_model_{a.agent}",
        help=f"Recorded: {', '.join(a.models)}. Others: the active models of the {settings.provider} provider.",
    )  # fmt: skip
    if version not in a.prompt_versions:
        prompt_pins[a.agent] = version
    if model not in a.models:
        model_pins[a.agent] = model

if st.button("Replay", key="replay_run", type="primary", icon=":material/replay:"):
    try:
        with st.spinner("Replaying the run's calls…"):
            done = replay.replay(
                ui.engine(),
                viewer=ident,
                trace_id=chosen,
                prompt_pins=prompt_pins,
                model_pins=model_pins,
                ring=crypto.key_ring(settings),
            )
        st.session_state["replay_result"] = done
    except WorkbenchError as exc:
        st.error(ui.md_escape(exc))

shown = st.session_state.get("replay_result")
if not isinstance(shown, replay.Replay) or shown.original_trace_id != chosen:
    st.stop()
result = shown

st.subheader("Side by side")
pinned = [f"{a} {v}" for a, v in result.prompt_pins.items()] + [f"{a} on {m}" for a, m in result.model_pins.items()]
st.caption(
    f"Replay run {result.trace_id} of run {result.original_trace_id} ({result.original_kind}), with "
    + ui.md_escape(", ".join(pinned) or "the versions and models it recorded")
    + "."
)
totals = {side: result.totals(side) for side in ("original", "replay")}
st.dataframe(
    pd.DataFrame(
        {
            "Run": ["Original", "Replay"],
            "Tokens in": [t.input_tokens for t in totals.values()],
            "Tokens out": [t.output_tokens for t in totals.values()],
            "Cost": [usd(t.cost_usd) for t in totals.values()],
            "Latency (ms)": [round(t.latency_ms, 1) for t in totals.values()],
            "Cache hits": [t.cache_hits for t in totals.values()],
            "Errors": [t.errors for t in totals.values()],
        }
    ),
    hide_index=True,
)
changed_only = st.checkbox("Only calls whose answer changed", key="replay_changed_only")


def show_output(agent: str, side: replay.Side) -> None:
    if side.error:
        st.error(ui.md_escape(side.error))
    out: Any = side.output
    if out is None:
        return
    if side.verdict is not None:  # a Verifier call: the final verdict, then the model's own if it differs
        final = side.verdict
        st.text(f"Verdict: {final.verdict}" + (f" ({final.failure_mode})" if final.failure_mode else ""))
        st.text(final.reason)
        if out.get("verdict") != final.verdict:
            st.caption(f"The model said {ui.md_escape(out.get('verdict'))}; the deterministic guard overruled it.")
    elif agent == "writer":
        rows = out.get("sentences", [])
        st.dataframe(
            pd.DataFrame({"Sentence": [r["text"] for r in rows], "Cites": [", ".join(r["cites"]) for r in rows]}),
            hide_index=True,
        )
    elif agent == "rewriter":
        st.text(out.get("text", ""))
        st.caption("Cites " + ui.md_escape(", ".join(out.get("cites", []))))
    else:
        st.dataframe(pd.DataFrame(out.get("facts", [])), hide_index=True)


for number, call in enumerate(result.calls, 1):
    if changed_only and call.same_output:
        continue
    with st.container(border=True):
        st.text(f"{number}. {call.agent} · {'same answer' if call.same_output else 'different answer'}")
        if "sentence" in call.input:
            st.text(call.input["sentence"])
        if not call.prompt_matches:
            st.caption("This input no longer renders to the recorded prompt under its version (the call site changed).")
        with st.expander("Recorded input"):
            st.json(call.input)
        columns = st.columns(2)
        for column, title, side in ((columns[0], "Original", call.original), (columns[1], "Replay", call.replay)):
            with column:
                st.markdown(f"**{title}**")
                cost = usd(side.cost_usd)
                st.text(
                    f"{side.prompt_version} · {side.model} · {side.input_tokens + side.output_tokens} tokens · "
                    f"{cost} · {side.latency_ms:,.1f} ms" + (" · cache hit" if side.cache_hit else "")
                )
                show_output(call.agent, side)
