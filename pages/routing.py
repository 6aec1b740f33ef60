"""Routing (ops, prompt engineers): tier thresholds, a model per tier per agent, overrides, history,
a dry run of a brief, and the decisions the router made."""

import streamlit as st

from core import model_registry, routing, ui
from core.authz import Permission
from core.complexity import CANNOT_JUDGE, TIERS
from core.errors import WorkbenchError
from core.manuscripts import list_manuscripts
from core.providers import get_provider
from core.settings import get_settings

st.title("Routing")
ident = ui.identity()
settings = get_settings()
provider = get_provider(settings.provider)
name = provider.name

with ui.session() as s:
    current = routing.current_config(s, tenant_id=ident.tenant_id, settings=settings)
    history = routing.config_history(s, tenant_id=ident.tenant_id)
    decisions = routing.recent_decisions(s, tenant_id=ident.tenant_id, limit=50)
    titles = {m.id: m.title for m in list_manuscripts(s, tenant_id=ident.tenant_id)}
    registry = model_registry.snapshot(s)
    deprecated = model_registry.remaining_usage(s, identity=ident)
config = current.config

st.caption(
    "Each agent call gets its model by the first rule that applies: a model named in WORKBENCH\\_MODELS; an "
    "override below; the model of the tier the work's complexity score falls in; the provider's default. "
    "The Writer, Verifier and Rewriter of a paragraph share its score (the brief and its facts); the "
    "Librarian scores each chunk it reads."
)

with st.container(border=True):
    st.markdown("**What the score cannot judge**")
    for caveat in CANNOT_JUDGE:
        st.markdown(f"- {ui.md_escape(caveat)}")

# -- the configuration ------------------------------------------------------------------------

st.subheader("Configuration")
if current.version:
    by = ui.md_escape(current.actor or "unknown")
    why = f": {ui.md_escape(current.note)}" if current.note else "."
    st.caption(f"Version {current.version}, saved by {by} on {ui.when(current.created_at)}{why}")
else:
    st.caption("Built-in configuration: nothing saved yet for this workspace. Saving makes version 1.")
if flash := st.session_state.pop("routing_flash", None):
    st.success(flash)
named = routing.named_models(config) | set(routing.provider_defaults(provider, settings).values())
for line in model_registry.routing_notes(registry, named, deprecated):  # deprecated or retired (Models page)
    st.warning(ui.md_escape(line), icon=":material/schedule:")
unpriced = routing.unpriced_models(config, settings, models=registry)
if unpriced:
    st.warning(
        f"Not in the price table: {ui.md_escape(', '.join(unpriced))}. Calls to these models are recorded without a "
        "cost; add their prices with WORKBENCH\\_PRICING.",
        icon=":material/sell:",
    )

v = current.version  # widget keys carry the version, so a newly saved version refills the form
with st.form(f"routing_config_v{v}"):
    enabled = st.checkbox("Route by complexity and overrides", value=config.enabled, key=f"routing_v{v}_enabled")
    left, right = st.columns(2)
    simple_below = left.number_input(
        "Simple below (score)", 0.0, 100.0, config.simple_below, step=1.0, key=f"routing_v{v}_simple"
    )
    complex_from = right.number_input(
        "Complex from (score)", 0.0, 100.0, config.complex_from, step=1.0, key=f"routing_v{v}_complex"
    )
    st.markdown(f"**Models on the {ui.md_escape(name)} provider** (empty: the provider's default, shown greyed)")
    entered: dict[str, dict[str, str]] = {}
    forced: dict[str, str] = {}
    for agent, default in routing.provider_defaults(provider, settings).items():
        columns = st.columns(4)
        entered[agent] = {
            tier: column.text_input(
                f"{agent.capitalize()}: {tier}",
                value=config.tier_model(name, agent, tier) or "",
                placeholder=default,
                key=f"routing_v{v}_{agent}_{tier}",
            )
            for tier, column in zip(TIERS, columns, strict=False)
        }
        forced[agent] = columns[3].text_input(
            f"{agent.capitalize()}: override",
            value=config.override(name, agent) or "",
            placeholder="none",
            help="Used whatever the score.",
            key=f"routing_v{v}_{agent}_override",
        )
    note = st.text_input(
        "Why this change", key=f"routing_v{v}_note", placeholder="e.g. cheaper Verifier for simple briefs"
    )
    may_change = ui.allowed(Permission.CHANGE_ROUTING)
    if not may_change:
        st.caption("Your role may see the routing configuration but not change it.")
    if st.form_submit_button(f"Save as version {current.version + 1}", type="primary", disabled=not may_change):
        try:
            new = routing.edited(
                config,
                provider=name,
                enabled=enabled,
                simple_below=simple_below,
                complex_from=complex_from,
                models=entered,
                overrides=forced,
            )
            with ui.session() as s:
                saved = routing.save_config(
                    s, tenant_id=ident.tenant_id, config=new, actor=ident, note=note, settings=settings
                )
        except WorkbenchError as error:
            st.error(ui.md_escape(error))
        else:
            st.session_state["routing_flash"] = f"Saved routing version {saved.version}."
            st.rerun()

st.subheader("History")
if history:
    rows = []
    for i, stored in enumerate(history):
        before = history[i + 1].config if i + 1 < len(history) else routing.builtin_config(settings)
        rows.append(
            {
                "Version": stored.version,
                "Saved by": stored.actor,
                "When": ui.when(stored.created_at),
                "Note": stored.note,
                "What changed": "; ".join(routing.changes(before, stored.config)) or "nothing",
            }
        )
    st.dataframe(rows, hide_index=True)
else:
    st.caption("No version saved yet.")

# -- dry run ----------------------------------------------------------------------------------

st.subheader("Dry run")
with st.form("routing_dry_run"):
    brief = st.text_area("Paragraph brief", key="routing_dry_brief")
    manuscript_id = st.selectbox(
        "Facts from",
        [None, *titles],
        format_func=lambda i: "No manuscript (the brief alone)" if i is None else titles[i],
        key="routing_dry_manuscript",
    )
    tried = st.form_submit_button("Show tier and models")


if tried and not brief.strip():
    st.warning("Write a brief first.")
elif tried:
    facts = []
    if manuscript_id is not None:
        with ui.session() as s:
            facts = routing.brief_facts(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id, brief=brief)
        documents = len({f.document for f in facts})
        st.caption(f"The manuscript's search found {len(facts)} facts in {documents} documents for this brief.")
    result = routing.dry_run(brief, facts, current, provider, settings, models=registry)
    judged = result.paragraph
    a, b = st.columns(2)
    a.metric("Tier", config.tier(judged.score) if config.enabled else "default (routing off)")
    b.metric("Score", f"{judged.score:g} of 100")
    for caveat in judged.caveats:
        st.warning(caveat)
    signals = [(c.label, c.value, c.saturates_at, c.weight, c.contribution) for c in judged.components]
    columns = ("Signal", "Measured", "Full at", "Weight", "Points")
    st.dataframe([dict(zip(columns, row, strict=True)) for row in signals], hide_index=True)
    st.dataframe(
        [
            {"Agent": agent, "Tier": r.tier, "Score": r.score, "Model": r.model, "Why": r.reason}
            for agent, r in result.routes.items()
        ],
        hide_index=True,
    )
    st.caption(
        "The Librarian row scores the brief as if it were a chunk of a source; at ingestion each chunk is scored."
    )

# -- decisions --------------------------------------------------------------------------------

st.subheader("Recent decisions")
if decisions:
    st.dataframe(
        [
            {
                "When": ui.when(d.created_at),
                "Agent": d.agent,
                "Provider": d.provider,
                "Model": d.model,
                "Tier": d.tier,
                "Score": d.score,
                "Why": d.reason,
                "Trace": d.trace_id,
            }
            for d in decisions
        ],
        hide_index=True,
    )
else:
    st.caption("No agent calls recorded yet.")
