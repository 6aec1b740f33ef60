"""Trajectories (developers, ops): recorded runs, filtered and paged; a trace as a timeline of its spans."""

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from core import crypto, ui
from core.charts import usd
from core.errors import WorkbenchError
from core.settings import get_settings
from core.trace_chart import span_label, timeline_figure
from core.trajectories import KINDS, STATUSES, TrajectoryFilter, filter_options, get_trace, list_trajectories

PAGE_SIZE = 25
RANGES = {"Any time": None, "Last hour": 1, "Last 24 hours": 24, "Last 7 days": 24 * 7, "Last 30 days": 24 * 30}
BETWEEN = "Between dates"

st.title("Trajectories")
ident = ui.identity()
st.caption(
    "Every run of this workspace (drafts, ingests, edits, re-checks): its spans with timings, tokens and cost. "
    "Content is stored encrypted and opened here with the key ring."
)


def any_of(value: object) -> str:
    return "Any" if value is None else str(value)


with ui.session() as s:
    options = filter_options(s, tenant_id=ident.tenant_id)

with st.expander("Filters", expanded=True):
    a, b, c, d = st.columns(4)
    status = a.selectbox("Status", [None, *STATUSES], format_func=any_of, key="traj_status")
    kind = b.selectbox("Run", [None, *KINDS], format_func=any_of, key="traj_kind")
    agent = c.selectbox("Agent", [None, *options.agents], format_func=any_of, key="traj_agent")
    model = d.selectbox("Model", [None, *options.models], format_func=any_of, key="traj_model")
    e, f, g = st.columns(3)
    prompt = e.selectbox("Prompt version", [None, *options.prompt_versions], format_func=any_of, key="traj_prompt")
    paragraph = f.number_input("Paragraph id", min_value=0, step=1, key="traj_paragraph", help="0 means any paragraph.")
    span = g.selectbox("Started", [*RANGES, BETWEEN], key="traj_range")
    since = until = None
    if span == BETWEEN:
        days = st.date_input("Between (UTC)", value=(date.today() - timedelta(days=7), date.today()), key="traj_days")
        if len(days) == 2:
            since = datetime.combine(days[0], time.min, UTC)
            until = datetime.combine(days[1] + timedelta(days=1), time.min, UTC)
    elif hours := RANGES[span]:
        since = datetime.now(UTC) - timedelta(hours=hours)

filters = TrajectoryFilter(
    status=status,
    kind=kind,
    agent=agent,
    model=model,
    prompt_version=prompt,
    paragraph_id=int(paragraph) or None,
    since=since,
    until=until,
)
with ui.session() as s:
    result = list_trajectories(
        s, tenant_id=ident.tenant_id, filters=filters, page=st.session_state.get("traj_page", 1), page_size=PAGE_SIZE
    )
st.session_state["traj_page"] = result.page  # clamped: the filters may have left fewer pages

if not result.rows:
    if filters == TrajectoryFilter():
        st.caption(
            "No trajectories yet: draft a paragraph or add a PDF on the Write page, and each run is recorded "
            "here with its spans."
        )
    else:
        st.caption("No trajectory matches these filters; widen the time range or set a filter back to Any.")
else:
    st.dataframe(
        pd.DataFrame(
            {
                "Started": [ui.when(t.started_at) for t in result.rows],
                "Run": [t.kind for t in result.rows],
                "Status": [t.status for t in result.rows],
                "Paragraph": [t.paragraph_id for t in result.rows],
                "Calls": [t.calls for t in result.rows],
                "Errors": [t.errors for t in result.rows],
                "Tokens": [t.input_tokens + t.output_tokens for t in result.rows],
                "Cost": [usd(None if t.cost_usd is None else float(t.cost_usd)) for t in result.rows],
                "Duration (ms)": [t.duration_ms for t in result.rows],
                "Error": [t.error_class or "" for t in result.rows],
                "Trace": [t.trace_id for t in result.rows],
            }
        ),
        hide_index=True,
    )
    left, right = st.columns([1, 3])
    left.number_input(f"Page (of {result.pages})", min_value=1, max_value=result.pages, step=1, key="traj_page")
    right.caption(f"{result.total:,} trajectories match; {PAGE_SIZE} a page, newest first.")


def _span_cost(kind: str, cost: object) -> str:
    # Only model calls cost anything; a stage or a routing decision has no price to be missing.
    if kind != "agent":
        return ""
    return usd(None if cost is None else float(cost))  # type: ignore[arg-type]


# Pick a trace: from this page, or the one a shared ?trace= link names (even if on another page).
labels = {t.trace_id: f"{ui.when(t.started_at)} · {t.kind} · {t.status} · {t.trace_id[:12]}" for t in result.rows}
# A link this page did not write itself (a page load) wins over the last pick; the page's own
# link to a trace the filters now hide does not keep it in the choices.
linked = st.query_params.get("trace") or ""
fresh = bool(linked) and linked != st.session_state.get("traj_linked")
choices = list(labels)
if fresh and linked not in labels:
    choices.insert(0, linked)
if not choices:
    st.stop()
if fresh:
    st.session_state["traj_trace"] = linked
chosen = st.selectbox("Trace", choices, format_func=lambda t: labels.get(t, f"{t} (from the link)"), key="traj_trace")
st.query_params["trace"] = st.session_state["traj_linked"] = chosen

try:
    with ui.session() as s:
        trace = get_trace(s, viewer=ident, trace_id=chosen, ring=crypto.key_ring(get_settings()))
except WorkbenchError as exc:
    st.error(ui.md_escape(exc))
    st.stop()

run = trace.trajectory
st.subheader(f"Trace {run.trace_id}")
if not trace.content_hidden and run.calls:
    st.page_link("pages/replay.py", label="Replay this run", icon=":material/replay:", query_params={"trace": chosen})
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Status", run.status + (f" · {run.error_class}" if run.error_class else ""))
m2.metric("Duration", "–" if run.duration_ms is None else f"{run.duration_ms:,.0f} ms")
m3.metric("Agent calls", f"{run.calls:,}", help=f"{run.errors} failed")
m4.metric(
    "Tokens", f"{run.input_tokens + run.output_tokens:,}", help=f"{run.input_tokens:,} in, {run.output_tokens:,} out"
)
m5.metric(
    "Cost",
    usd(None if run.cost_usd is None else float(run.cost_usd)),
    help="Unpriced: a call used a model with no price (set one in WORKBENCH_PRICING).",
)

if not trace.spans:
    st.caption("This run recorded no spans yet.")
else:
    st.plotly_chart(timeline_figure(trace.spans), key="traj_timeline")
    st.dataframe(
        pd.DataFrame(
            {
                "Start (+ms)": [round(sp.offset_ms, 1) for sp in trace.spans],
                "Duration (ms)": [round(sp.event.duration_ms or 0.0, 1) for sp in trace.spans],
                "Span": [span_label(sp) for sp in trace.spans],
                "Kind": [sp.event.kind for sp in trace.spans],
                "Status": [sp.event.status for sp in trace.spans],
                "Agent": [sp.event.agent or "" for sp in trace.spans],
                "Model": [sp.event.model or "" for sp in trace.spans],
                "Prompt": [sp.event.prompt_version or "" for sp in trace.spans],
                "Tokens in": [sp.event.input_tokens for sp in trace.spans],
                "Tokens out": [sp.event.output_tokens for sp in trace.spans],
                "Cost": [_span_cost(sp.event.kind, sp.event.cost_usd) for sp in trace.spans],
                "Error": [sp.event.error_class or "" for sp in trace.spans],
            }
        ),
        hide_index=True,
    )
    st.subheader("Span content")
    for sp in trace.spans:
        if not sp.has_content and not sp.event.attributes:
            continue
        label = f"{sp.event.name} · {sp.event.kind} · +{sp.offset_ms:,.0f} ms"
        with st.expander(ui.md_escape(label)):
            if sp.content_error:
                st.error(ui.md_escape(sp.content_error), icon=":material/lock:")
            elif trace.content_hidden and sp.has_content:
                st.caption(":material/lock: Content hidden for your role: it may see timings, not prompts or outputs.")
            elif isinstance(sp.content, dict | list):
                st.json(sp.content)
            elif sp.has_content:
                st.code(str(sp.content), language=None)
            if sp.event.attributes:
                st.caption("Metadata")
                st.json(sp.event.attributes)

st.subheader("Paragraph produced")
version = trace.version
if version is None:
    no_version = "This run produced no paragraph version (PDF ingests and failed runs do not)."
    st.caption("Hidden for your role, like the span content." if trace.content_hidden else no_version)
else:
    st.caption(f"Version {version.number} of paragraph {version.paragraph_id} · {version.status.replace('_', ' ')}")
    st.text(version.text)
    st.dataframe(
        pd.DataFrame(
            {
                "Sentence": [x.text for x in version.sentences],
                "Verdict": [x.verdict for x in version.sentences],
                "Failure mode": [x.failure_mode or "" for x in version.sentences],
                "Reason": [x.reason for x in version.sentences],
                "Cites": [", ".join(x.cites) for x in version.sentences],
            }
        ),
        hide_index=True,
    )
