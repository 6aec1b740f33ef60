"""Verification (researchers, prompt engineers): how well drafted sentences are supported."""

from datetime import timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from core import alerts, policy, ui
from core.errors import WorkbenchError
from core.false_supports import report_false_support, reportable_sentences
from core.manuscripts import list_manuscripts
from core.metrics import recent_sentence_checks, verification_summary
from core.models import utcnow

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
    checks = recent_sentence_checks(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id, limit=500)
    reportable = {
        r.sentence_check_id: r for r in reportable_sentences(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)
    }
    now = utcnow()
    policy_rate = policy.policy_violation_rate(s, tenant_id=ident.tenant_id, since=now - timedelta(days=7), until=now)


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


st.caption("Rates and failure modes count the latest version of each paragraph: what researchers see.")
a, b, c, d = st.columns(4)
a.metric("Sentence support rate", rate(summary.sentence_support_rate), help="Supported sentences / sentences.")
b.metric("Supported sentences", f"{summary.supported} of {summary.sentences}")
c.metric("Paragraph verification rate", rate(summary.paragraph_verification_rate), help="Every sentence supported.")
d.metric("Verified paragraphs", f"{summary.verified_paragraphs} of {summary.paragraphs}")

st.subheader("Failure modes")
if summary.failure_modes:
    modes = pd.DataFrame(list(summary.failure_modes.items()), columns=["Failure mode", "Sentences"])
    figure = px.bar(modes, x="Failure mode", y="Sentences", text="Sentences")
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(figure, key="verification_failure_modes")
else:
    st.caption("No unsupported sentence in the latest versions.")

st.subheader("Sentence verdicts")
st.caption("Every check, older versions included, newest first.")
if not checks:
    st.caption("No sentences checked yet: draft a paragraph on the Write page.")
else:
    table = pd.DataFrame(
        {
            "Sentence": [r.text for r in checks],
            "Verdict": [r.verdict for r in checks],
            "Failure mode": [r.failure_mode or "" for r in checks],
            "Reason": [r.reason for r in checks],
            "Cites": [", ".join(map(str, r.cites)) for r in checks],
            "Paragraph": [r.paragraph_id for r in checks],
            "Version": [r.version_number for r in checks],
            "Rewrites": [r.rewrite_rounds for r in checks],
            "Checked": [r.created_at for r in checks],
            "Manuscript": [titles.get(r.manuscript_id, "") for r in checks],
        }
    )
    left, right = st.columns(2)
    verdicts = left.multiselect("Verdict", sorted(table["Verdict"].unique()), key="verification_verdicts")
    failures = right.multiselect(
        "Failure mode", sorted(m for m in table["Failure mode"].unique() if m), key="verification_failure_filter"
    )
    if verdicts:
        table = table[table["Verdict"].isin(verdicts)]
    if failures:
        table = table[table["Failure mode"].isin(failures)]
    st.dataframe(table, hide_index=True, column_config={"Sentence": st.column_config.TextColumn(width="large")})
    st.caption(f"{len(table)} of {len(checks)} sentence checks shown.")

st.subheader("Policy violations (last 7 days)")
st.caption("Hostile text in sources, PII, unknown sources and harmful content found by the policy gateway.")
a, b, c = st.columns(3)
a.metric("Violations per agent call", "–" if policy_rate.rate is None else f"{policy_rate.rate:.2f}")
b.metric("Violations", f"{policy_rate.violations} in {policy_rate.calls} calls")
c.metric("Blocked outputs", policy_rate.blocked)
if policy_rate.by_rule:
    st.dataframe(
        pd.DataFrame(list(policy_rate.by_rule.items()), columns=["Rule", "Violations"]),
        hide_index=True,
    )

st.subheader("Report a false support")
if not reportable:
    st.caption("No supported sentence in the latest versions to report.")
else:
    st.caption("A sentence shown as supported that its cited facts do not support: ops get a critical alert.")
    with st.form("verification_report", clear_on_submit=True):
        check_id = st.selectbox(
            "Supported sentence",
            list(reportable),
            format_func=lambda i: (
                f"¶{reportable[i].paragraph_id} v{reportable[i].version_number}: {reportable[i].text}"
            ),
            key="verification_report_sentence",
        )
        note = st.text_input("What is wrong (optional)", key="verification_report_note")
        if st.form_submit_button("Report false support", icon=":material/flag:"):
            try:
                with ui.session() as s:
                    report_false_support(
                        s, tenant_id=ident.tenant_id, user_id=ident.user_id, sentence_check_id=check_id, note=note
                    )
                with ui.session() as s:
                    alerts.evaluate(s, tenant_id=ident.tenant_id)  # ops see it now, not at the next round
            except WorkbenchError as exc:
                st.error(ui.md_escape(exc))
            else:
                st.success("Reported. Ops see a critical false support alert on the Operations page.")
st.caption(
    "To re-run a paragraph's calls with another prompt version or model, open its run on the Trajectories "
    "page and choose Replay this run."
)
