"""Costs (ops): spend, tokens, calls, latency, errors and quality over day, week or month."""

import streamlit as st

from core import charts, dashboard, ui

st.title("Costs")
ident = ui.identity()
window = st.radio(
    "Window",
    list(charts.WINDOW_LABELS),
    format_func=charts.WINDOW_LABELS.__getitem__,
    horizontal=True,
    index=1,
    key="costs_window",
)
with ui.session() as s:
    view = dashboard.costs_view(s, tenant_id=ident.tenant_id, window=window)
    admin_of = dashboard.admin_tenant_ids(s, user_id=ident.user_id)
    tenants = dashboard.spend_by_tenant(s, tenant_ids=admin_of, window=window, now=view.totals.window.end)

now, before = view.totals.current, view.totals.previous
versus = charts.PREVIOUS_LABELS[window]


def delta(current: float | None, previous: float | None) -> str | None:
    if current is None or not previous:
        return None
    return f"{charts.change((current - previous) / previous)} {versus}"


st.caption(
    f"{charts.WINDOW_LABELS[window]} up to {ui.when(view.totals.window.end)}, this workspace only. Spend counts "
    "priced calls; calls to a model without a price are counted as unpriced, never as $0."
)
a, b, c, d, e = st.columns(5)
a.metric("Spend", charts.usd(now.spend_usd), delta(now.spend_usd, before.spend_usd), delta_color="inverse")
b.metric("Tokens (in + out)", f"{now.tokens:,}", delta(now.tokens, before.tokens), delta_color="off")
c.metric("Agent calls", f"{now.calls:,}", delta(now.calls, before.calls), delta_color="off")
d.metric("Unpriced calls", f"{now.unpriced_calls:,}", help="Calls to a model with no price: not in the spend.")
e.metric(
    "Week-over-week spend",
    charts.change(view.week.spend_change) or "–",
    help="Spend of the last 7 days against the 7 days before.",
)
runs = view.paragraphs.total
a, b, c, d, e = st.columns(5)
a.metric(
    "Cost per paragraph",
    charts.run_cost(runs, runs.cost_per_paragraph),
    help="Spend of paragraph runs / runs. Runs with an unpriced call are left out of both.",
)
b.metric(
    "Cost per verified paragraph",
    charts.run_cost(runs, runs.cost_per_verified_paragraph),
    help="Spend of every paragraph run, failed ones included, / runs that ended verified.",
)
c.metric(
    "Paragraph runs",
    f"{runs.runs:,}",
    help=f"{runs.verified_runs:,} ended verified; {runs.unpriced_runs:,} had an unpriced call.",
)
d.metric("Cache hit rate", charts.rate(now.cache_hit_rate), help="Calls answered from this workspace's cache.")
e.metric("Error rate", charts.rate(now.error_rate), help="Failed calls among those sent to a provider.")

if not now.calls:
    st.info("No agent calls in this window yet: draft a paragraph on the Write page, or pick a longer window.")

st.subheader("Over time")
bucket = view.totals.window.bucket
for tab, metric in zip(st.tabs(["Spend", "Tokens", "Calls"]), ("spend", "tokens", "calls"), strict=True):
    with tab:
        st.plotly_chart(charts.series_figure(view.series, metric, bucket=bucket), key=f"costs_series_{metric}")

st.subheader("Breakdowns")
labels = [charts.DIMENSION_LABELS[d] for d in dashboard.DIMENSIONS]
for tab, dimension in zip(st.tabs(labels), dashboard.DIMENSIONS, strict=True):
    rows = view.breakdowns[dimension]
    with tab:
        if not rows:
            st.caption("Nothing to break down in this window.")
            continue
        st.plotly_chart(charts.breakdown_figure(rows, dimension=dimension), key=f"costs_by_{dimension}")
        st.dataframe(charts.breakdown_table(rows, dimension=dimension), hide_index=True)

left, right = st.columns(2)
with left:
    st.subheader("Latency")
    st.caption("P50 and P95 per agent and model; cache hits left out.")
    if view.latency:
        st.dataframe(charts.latency_table(view.latency), hide_index=True)
        st.plotly_chart(charts.latency_figure(view.latency), key="costs_latency")
    else:
        st.caption("No call reached a provider in this window.")
with right:
    st.subheader("Errors")
    st.caption("Error rate per provider and model, among calls sent (cache hits left out).")
    if view.errors:
        st.dataframe(charts.error_table(view.errors), hide_index=True)
    else:
        st.caption("No call reached a provider in this window.")

if admin_of:
    st.subheader("Spend by tenant")
    st.dataframe(charts.tenant_table(tenants), hide_index=True)

st.subheader("Quality")
quality = view.quality.summary
st.caption("Paragraph versions saved in this window (drafts, edits and re-checks) and their sentence checks.")
a, b, c = st.columns(3)
a.metric("Sentence support rate", charts.rate(quality.sentence_support_rate), help="Supported sentences / sentences.")
b.metric(
    "Paragraph verification rate",
    charts.rate(quality.paragraph_verification_rate),
    help="Versions whose every sentence is supported / versions.",
)
c.metric("Verified versions", f"{quality.verified_paragraphs:,} of {quality.paragraphs:,}")
left, right = st.columns(2)
with left:
    st.markdown("**Failure modes**")
    if quality.failure_modes:
        st.plotly_chart(charts.failure_modes_figure(quality.failure_modes), key="costs_failure_modes")
    else:
        st.caption("No unsupported sentence in this window.")
with right:
    st.markdown("**Prompt version against failure rate**")
    if view.quality.prompts:
        st.dataframe(charts.prompt_table(view.quality.prompts), hide_index=True)
    else:
        st.caption("No paragraph version saved in this window.")
st.markdown("**Writer model against cost and quality**")
models = view.paragraphs.by_model
if models:
    st.dataframe(charts.model_table(models), hide_index=True)
    st.plotly_chart(charts.model_figure(models), key="costs_models")
else:
    st.caption("No paragraph drafted in this window.")
