"""Models (ops, admins): the model registry, deprecated models' remaining usage, lifecycle actions."""

from datetime import timedelta

import streamlit as st

from core import model_registry, ui
from core.authz import Permission
from core.errors import WorkbenchError
from core.models import utcnow

st.title("Models")
ident = ui.identity()

with ui.session() as s:
    registry = model_registry.snapshot(s)
    usage = model_registry.remaining_usage(s, identity=ident)

st.caption(
    "Routing picks only registered models that are not retired, and the gateway refuses calls to any other. "
    "A deprecated model keeps working, with a warning, until its removal date; from that day it counts as "
    "retired. Prices are USD per 1M tokens; a model without one is priced by the built-in table."
)
if flash := st.session_state.pop("models_flash", None):
    st.success(flash)

# -- deprecated models and what still uses them ---------------------------------------------------

st.subheader("Deprecated")
scope = "all workspaces" if ui.allowed(Permission.VIEW_ALL_TENANTS) else "this workspace"
if usage:
    for u in usage:
        cost = "unpriced" if u.cost_usd is None else f"{u.cost_usd:.4f} USD"
        st.warning(
            f"{ui.md_escape(u.line())} ({scope}): {u.input_tokens + u.output_tokens} tokens, {ui.md_escape(cost)}",
            icon=":material/schedule:",
        )
else:
    st.caption("No model is deprecated.")

# -- the registry -----------------------------------------------------------------------------------

st.subheader("Registry")
rows = []
for e in sorted(registry.entries.values(), key=lambda e: (e.spec.provider, e.model)):
    spec, flags = e.spec, e.spec.governance
    rows.append(
        {
            "Model": e.model,
            "Provider": spec.provider,
            "Version": spec.version,
            "Risk": spec.risk_tier,
            "Status": registry.status(e.model),
            "Removal": e.removal_date.isoformat() if e.removal_date else "",
            "Input": spec.input_per_mtok,
            "Output": spec.output_per_mtok,
            "Cached input": spec.cached_input_per_mtok,
            "PII allowed": flags.get("pii_allowed"),
            "EU hosted": flags.get("eu_hosted"),
            "Retention (days)": flags.get("data_retention_days"),
            "Approved by": flags.get("approved_by", ""),
            "Notes": spec.notes,
            "Changed by": e.updated_by,
        }
    )
st.dataframe(rows, hide_index=True)

if not ui.allowed(Permission.MANAGE_MODELS):
    st.caption("Only admins change the registry.")
    st.stop()


def done(message: str) -> None:
    st.session_state["models_flash"] = message
    st.rerun()


# -- add or update (admins) -------------------------------------------------------------------------

st.subheader("Add or update a model")
base = st.selectbox(
    "Start from",
    [None, *sorted(registry.entries)],
    format_func=lambda m: "a new model" if m is None else m,
    key="models_base",
)
was = registry.entry(base) if base else None
cur = was.spec if was else model_registry.ModelSpec("", "")
flags = cur.governance
k = f"models_{base or 'new'}"  # keys carry the model, so picking another refills the form
with st.form(f"{k}_register"):
    left, middle, right = st.columns(3)
    model = left.text_input("Model id", cur.model, key=f"{k}_model", placeholder="e.g. gpt-4.1-mini")
    provider = middle.text_input("Provider", cur.provider, key=f"{k}_provider", placeholder="openai, anthropic")
    version = right.text_input("Version", cur.version, key=f"{k}_version")
    tiers = model_registry.RISK_TIERS
    risk = left.selectbox("Risk tier", tiers, index=tiers.index(cur.risk_tier), key=f"{k}_risk")
    price_in = middle.number_input("Input USD / 1M", 0.0, value=cur.input_per_mtok, key=f"{k}_in")
    price_out = right.number_input("Output USD / 1M", 0.0, value=cur.output_per_mtok, key=f"{k}_out")
    price_cached = left.number_input("Cached input USD / 1M", 0.0, value=cur.cached_input_per_mtok, key=f"{k}_cached")
    retention = middle.number_input(
        "Data retention (days)", 0, value=flags.get("data_retention_days"), key=f"{k}_retention"
    )
    approved_by = right.text_input("Approved by", flags.get("approved_by") or "", key=f"{k}_approved_by")
    pii = left.checkbox("PII allowed", bool(flags.get("pii_allowed")), key=f"{k}_pii")
    eu = middle.checkbox("EU hosted", bool(flags.get("eu_hosted")), key=f"{k}_eu")
    notes = st.text_input("Notes", cur.notes, key=f"{k}_notes")
    if st.form_submit_button("Save model", type="primary"):
        governance = {**flags, "pii_allowed": pii, "eu_hosted": eu, "data_retention_days": retention}
        spec = model_registry.ModelSpec(
            model,
            provider,
            version,
            risk,
            price_in,
            price_out,
            price_cached,
            {**governance, "approved_by": approved_by},
            notes,
        )
        try:
            with ui.session() as s:
                saved = model_registry.register(s, by=ident, spec=spec)
        except WorkbenchError as error:
            st.error(ui.md_escape(error))
        else:
            done(f"Saved {ui.md_escape(saved.model)} ({saved.status}).")  # an id may be a bare URL

# -- lifecycle (admins) -----------------------------------------------------------------------------

st.subheader("Deprecate, retire or reactivate")
with st.form("models_lifecycle"):
    chosen = st.selectbox("Model", sorted(registry.entries), key="models_lifecycle_model")
    action = st.radio("Action", ("deprecate", "retire", "reactivate"), horizontal=True, key="models_action")
    removal = st.date_input(
        "Removal date (deprecate)", value=utcnow().date() + timedelta(days=30), key="models_removal"
    )
    reason = st.text_input("Why", key="models_reason", placeholder="e.g. replaced by gpt-4.1-mini")
    if st.form_submit_button("Apply"):
        try:
            with ui.session() as s:
                if action == "deprecate":
                    entry = model_registry.deprecate(s, by=ident, model=chosen, removal_date=removal, reason=reason)
                elif action == "retire":
                    entry = model_registry.retire(s, by=ident, model=chosen, reason=reason)
                else:
                    entry = model_registry.reactivate(s, by=ident, model=chosen, reason=reason)
        except WorkbenchError as error:
            st.error(ui.md_escape(error))
        else:
            done(f"{ui.md_escape(entry.model)} is now {entry.status}.")
