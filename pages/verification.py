"""Verification (researchers, prompt engineers): how well drafted sentences are supported."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core import ui
from core.manuscripts import list_manuscripts
from core.metrics import recent_sentence_checks, verification_summary

st.title("Verification")
ident = ui.identity()

with ui.session() as s:
    titles = {m.id: m.title for m in list_manuscripts(s, tenant_id=ident.tenant_id)}
    manuscript_id = st.selectbox(
        "Manuscript",
        [None, *titles],
        format_func=lambda i: "All manuscripts" if i is None else titles[i],
        key="verification_manuscript",
    )
    summary = verification_summary(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)
    checks = pd.DataFrame(
        ui.records(recent_sentence_checks(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id, limit=500))
    )

a, b, c, d = st.columns(4)
a.metric(
    "Sentence support rate",
    f"{summary.sentence_support_rate:.0%}" if summary.sentences else "–",
    help="Supported sentences / sentences checked, over every stored version.",
)
b.metric("Sentences checked", f"{summary.supported} of {summary.sentences} supported")
c.metric(
    "Paragraph verification rate",
    f"{summary.paragraph_verification_rate:.0%}" if summary.paragraphs else "–",
    help="Paragraphs whose latest version has every sentence supported.",
)
d.metric("Paragraphs", f"{summary.verified_paragraphs} of {summary.paragraphs} verified")

st.subheader("Failure modes")
if summary.failure_modes:
    modes = pd.DataFrame(
        sorted(summary.failure_modes.items(), key=lambda kv: -kv[1]), columns=["Failure mode", "Sentences"]
    )
    figure = px.bar(modes, x="Failure mode", y="Sentences", text="Sentences")
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(figure, key="verification_failure_modes")
else:
    st.caption("No unsupported sentences recorded.")

st.subheader("Sentence verdicts")
if checks.empty:
    st.caption("No sentences checked yet: draft a paragraph on the Write page.")
    st.stop()
left, right = st.columns(2)
verdicts = left.multiselect("Verdict", sorted(checks["verdict"].dropna().unique()), key="verification_verdicts")
modes_seen = sorted(checks["failure_mode"].dropna().unique())
failure_modes = right.multiselect("Failure mode", modes_seen, key="verification_failure_filter")
if verdicts:
    checks = checks[checks["verdict"].isin(verdicts)]
if failure_modes:
    checks = checks[checks["failure_mode"].isin(failure_modes)]
if "cites" in checks:
    checks = checks.assign(cites=checks["cites"].map(lambda refs: ", ".join(refs or [])))
st.dataframe(checks, hide_index=True)
st.caption(f"{len(checks)} sentence checks shown (most recent first).")
