"""Figures and tables of the Costs page, built from ``core.dashboard`` results (no Streamlit here).

Money reads ``unpriced`` wherever a group's calls have no price: never ``$0``. Tables are lists
of plain dicts (strings and numbers) that ``st.dataframe`` shows as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import plotly.graph_objects as go

from core.dashboard import (
    BreakdownRow,
    Bucket,
    ErrorRow,
    LatencyRow,
    ModelQuality,
    ParagraphCosts,
    PromptFailureRow,
    TenantSpend,
)

WINDOW_LABELS = {"day": "Last 24 hours", "week": "Last 7 days", "month": "Last 30 days"}
PREVIOUS_LABELS = {"day": "vs the 24 hours before", "week": "vs the week before", "month": "vs the 30 days before"}
DIMENSION_LABELS = {"agent": "Agent", "model": "Model", "provider": "Provider", "prompt_version": "Prompt version"}

_LAYOUT: dict[str, Any] = {"height": 320, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}}


def usd(value: float | None) -> str:
    """``$1,234.56`` (four decimals under a dollar: model calls are cheap), ``unpriced`` for None."""
    if value is None:
        return "unpriced"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def run_cost(costs: ParagraphCosts, value: float | None) -> str:
    """A cost per paragraph: ``unpriced`` when every run had an unpriced call, ``–`` when no run
    (or no verified run) gives one."""
    if value is not None:
        return usd(value)
    return "unpriced" if costs.runs and not costs.priced_runs else "–"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def change(value: float | None) -> str | None:
    """A relative change as a metric delta (``+12.5%``); None when there is nothing to compare."""
    return None if value is None else f"{value:+.1%}"


def ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"


# Over time -------------------------------------------------------------------------------------

SeriesMetric = Literal["spend", "tokens", "calls"]


def series_figure(buckets: Sequence[Bucket], metric: SeriesMetric, *, bucket: str) -> go.Figure:
    """Spend (USD), tokens (input and output stacked) or calls per hour or day."""
    x = [b.start for b in buckets]
    figure = go.Figure()
    if metric == "spend":
        figure.add_bar(x=x, y=[b.usage.spend_usd or 0.0 for b in buckets], name="Spend (USD)")
    elif metric == "tokens":
        figure.add_bar(x=x, y=[b.usage.input_tokens for b in buckets], name="Input tokens")
        figure.add_bar(x=x, y=[b.usage.output_tokens for b in buckets], name="Output tokens")
        figure.update_layout(barmode="stack")
    else:
        figure.add_bar(x=x, y=[b.usage.calls - b.usage.errors for b in buckets], name="Calls")
        figure.add_bar(x=x, y=[b.usage.errors for b in buckets], name="Errors")
        figure.update_layout(barmode="stack")
    figure.update_layout(**_LAYOUT, xaxis_title=f"per {bucket} (UTC)", legend={"orientation": "h", "y": 1.12})
    return figure


# Breakdowns ------------------------------------------------------------------------------------


def breakdown_table(rows: Sequence[BreakdownRow], *, dimension: str) -> list[dict[str, Any]]:
    return [
        {
            DIMENSION_LABELS.get(dimension, dimension): r.key,
            "Spend": usd(r.usage.spend_usd),
            "Calls": r.usage.calls,
            "Unpriced calls": r.usage.unpriced_calls,
            "Input tokens": r.usage.input_tokens,
            "Output tokens": r.usage.output_tokens,
            "Cache hit rate": rate(r.usage.cache_hit_rate),
            "Error rate": rate(r.usage.error_rate),
        }
        for r in rows
    ]


def breakdown_figure(rows: Sequence[BreakdownRow], *, dimension: str) -> go.Figure:
    """Spend per group as horizontal bars; a group with no priced call is labelled unpriced."""
    ordered = list(reversed(rows))  # plotly draws the first bar at the bottom
    figure = go.Figure(
        go.Bar(
            x=[r.usage.spend_usd or 0.0 for r in ordered],
            y=[r.key for r in ordered],
            orientation="h",
            text=[usd(r.usage.spend_usd) for r in ordered],
            textposition="auto",
        )
    )
    figure.update_layout(**_LAYOUT, xaxis_title="Spend (USD)", yaxis_title=DIMENSION_LABELS.get(dimension, dimension))
    return figure


def tenant_table(rows: Sequence[TenantSpend]) -> list[dict[str, Any]]:
    return [
        {
            "Tenant": r.tenant,
            "Spend": usd(r.usage.spend_usd),
            "Calls": r.usage.calls,
            "Unpriced calls": r.usage.unpriced_calls,
            "Tokens": r.usage.tokens,
        }
        for r in rows
    ]


# Latency and errors ----------------------------------------------------------------------------


def latency_table(rows: Sequence[LatencyRow]) -> list[dict[str, Any]]:
    return [
        {"Agent": r.agent, "Model": r.model, "Calls": r.calls, "P50": ms(r.p50_ms), "P95": ms(r.p95_ms)} for r in rows
    ]


def latency_figure(rows: Sequence[LatencyRow]) -> go.Figure:
    labels = [f"{r.agent} · {r.model}" for r in rows]
    figure = go.Figure()
    figure.add_bar(x=labels, y=[r.p50_ms for r in rows], name="P50")
    figure.add_bar(x=labels, y=[r.p95_ms for r in rows], name="P95")
    figure.update_layout(**_LAYOUT, barmode="group", yaxis_title="Latency (ms)", legend={"orientation": "h", "y": 1.12})
    return figure


def error_table(rows: Sequence[ErrorRow]) -> list[dict[str, Any]]:
    return [
        {
            "Provider": r.provider,
            "Model": r.model,
            "Calls sent": r.calls,
            "Errors": r.errors,
            "Error rate": rate(r.error_rate),
            "By class": ", ".join(f"{c}: {n}" for c, n in r.by_class.items()),
        }
        for r in rows
    ]


# Quality ---------------------------------------------------------------------------------------


def failure_modes_figure(modes: Mapping[str, int]) -> go.Figure:
    figure = go.Figure(go.Bar(x=list(modes), y=list(modes.values()), text=list(modes.values())))
    figure.update_layout(**_LAYOUT, xaxis_title="Failure mode", yaxis_title="Sentences")
    return figure


def prompt_table(rows: Sequence[PromptFailureRow]) -> list[dict[str, Any]]:
    return [
        {
            "Agent": r.agent,
            "Prompt version": r.prompt_version,
            "Paragraph versions": r.versions,
            "Not verified": r.failed_versions,
            "Paragraph failure rate": rate(r.failure_rate),
            "Sentences": r.sentences,
            "Sentence failure rate": rate(r.sentence_failure_rate),
        }
        for r in rows
    ]


def model_table(rows: Sequence[ModelQuality]) -> list[dict[str, Any]]:
    return [
        {
            "Writer model": r.model,
            "Paragraph runs": r.costs.runs,
            "Verified": r.costs.verified_runs,
            "Verification rate": rate(r.costs.verification_rate),
            "Cost per paragraph": run_cost(r.costs, r.costs.cost_per_paragraph),
            "Cost per verified paragraph": run_cost(r.costs, r.costs.cost_per_verified_paragraph),
            "Unpriced runs": r.costs.unpriced_runs,
        }
        for r in rows
    ]


def model_figure(rows: Sequence[ModelQuality]) -> go.Figure:
    """Writer models placed by cost per paragraph (x) and verification rate (y); unpriced ones
    are left out of the chart (the table lists them)."""
    priced = [r for r in rows if r.costs.cost_per_paragraph is not None]
    figure = go.Figure(
        go.Scatter(
            x=[r.costs.cost_per_paragraph for r in priced],
            y=[r.costs.verification_rate for r in priced],
            mode="markers+text",
            text=[r.model for r in priced],
            textposition="top center",
            marker={"size": [max(8.0, min(40.0, r.costs.runs**0.5)) for r in priced]},
        )
    )
    figure.update_layout(
        **_LAYOUT, xaxis_title="Cost per paragraph (USD)", yaxis_title="Verification rate", yaxis_tickformat=".0%"
    )
    return figure
