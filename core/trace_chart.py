"""A trace as a timeline: one horizontal bar per span, from its start to its end (plotly, no Streamlit).

Rows keep the span order of ``core.trajectories.get_trace`` (start order) and show nesting by
indenting the label. Bars are coloured by span kind; a failed span gets a red outline, so an
error stands out whatever its kind. Labels and hover text are HTML-escaped: plotly renders a
few tags in them, and span names and models come from stored data.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import plotly.graph_objects as go

from core.trajectories import Span

KIND_COLOURS = {
    "stage": "#7f8c8d",
    "agent": "#2e86de",
    "attempt": "#54a0ff",
    "tool": "#10ac84",
    "routing": "#f368e0",
    "budget": "#ff9f43",
    "cache": "#48dbfb",
    "error": "#ee5253",
}
"""Colour of a span's bar by its kind; kinds not listed are grey."""

ERROR_OUTLINE = "#c0392b"
BAR_WIDTH = 0.7
"""Bar thickness as a share of a row."""
INDENT = "\u00a0\u00a0\u00a0"
"""Non-breaking spaces: plotly's SVG labels would collapse ordinary leading spaces."""

MIN_BAR_SHARE = 0.004
"""Instant spans (a routing decision, a budget check) are drawn at least this share of the trace
wide, so they can be seen and hovered; the hover still gives their real duration."""


def span_label(span: Span) -> str:
    """The span's name indented by its nesting depth (plain text; the chart escapes it)."""
    return INDENT * span.depth + ("└ " if span.depth else "") + span.event.name


def timeline_figure(spans: Sequence[Span], *, title: str | None = None) -> go.Figure:
    """The Gantt-like chart of ``spans``: x in milliseconds from the trace start."""
    figure = go.Figure()
    end = max((s.offset_ms + (s.event.duration_ms or 0.0) for s in spans), default=0.0)
    floor = max(end, 1.0) * MIN_BAR_SHARE
    rows = list(range(len(spans)))
    for kind in dict.fromkeys(s.event.kind for s in spans):
        picked = [(row, s) for row, s in zip(rows, spans, strict=True) if s.event.kind == kind]
        figure.add_trace(
            go.Bar(
                name=kind,
                orientation="h",
                y=[row for row, _ in picked],
                base=[s.offset_ms for _, s in picked],
                x=[max(s.event.duration_ms or 0.0, floor) for _, s in picked],
                # Fixed: plotly would size each kind's bars by the gaps between its own rows.
                width=BAR_WIDTH,
                marker={
                    "color": KIND_COLOURS.get(kind, "#95a5a6"),
                    "line": {
                        "color": [ERROR_OUTLINE if s.event.status == "error" else "rgba(0,0,0,0)" for _, s in picked],
                        "width": 2,
                    },
                },
                customdata=[_hover(s) for _, s in picked],
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    figure.update_layout(
        title=title,
        barmode="overlay",
        height=max(220, 28 * len(spans) + 90),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 40},
        legend={"title": {"text": "Span kind"}, "orientation": "h", "y": -0.15 if len(spans) > 6 else -0.4},
        xaxis={"title": {"text": "ms from trace start"}, "rangemode": "tozero"},
        yaxis={
            "tickmode": "array",
            "tickvals": rows,
            "ticktext": [escape(span_label(s)) for s in spans],
            "autorange": "reversed",  # the first span on top, as a timeline reads
            "automargin": True,
        },
    )
    return figure


def _hover(span: Span) -> str:
    e = span.event
    lines = [
        f"<b>{escape(e.name)}</b> ({escape(e.kind)}, {escape(e.status)})",
        f"start +{span.offset_ms:,.1f} ms · {e.duration_ms or 0.0:,.1f} ms",
    ]
    if e.agent:
        lines.append(f"agent {escape(e.agent)}")
    if e.model:
        lines.append(f"model {escape(e.provider or '')}/{escape(e.model)}".replace(" /", " "))
    if e.prompt_version:
        lines.append(f"prompt {escape(e.prompt_version)}")
    if e.input_tokens or e.output_tokens:
        lines.append(f"tokens {e.input_tokens:,} in · {e.output_tokens:,} out")
    if e.cost_usd is not None:
        lines.append(f"cost ${float(e.cost_usd):.6f}")
    if e.error_class:
        lines.append(f"error {escape(e.error_class)}")
    return "<br>".join(lines)
