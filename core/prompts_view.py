"""How the Prompts page shows things: the metrics table of two golden runs with its differences
highlighted, a sentence with its verdict, the canary against its baseline, the history chart.
Built from ``core.golden_results``, ``core.deployments`` and ``core.canary``; no Streamlit here.

Text that came out of a model is escaped by the caller's ``escape`` function before it reaches
markdown; colours come from a pandas Styler and Streamlit's own markdown colour directives, never
from raw HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from pandas.io.formats.style import Styler
from plotly.subplots import make_subplots

from core.canary import CanaryReport
from core.deployments import AgentDeployment, GateCheck
from core.golden_results import CaseView, Comparison, HistoryPoint, Metric
from core.prompt_diff import PromptVersion

BETTER, WORSE = "#d4f4dd", "#fbd9d6"
"""Background of a difference that is an improvement of B over A, and of one that is a regression."""


def _shown(value: float | None, kind: str, *, signed: bool = False) -> str:
    if value is None:
        return "unpriced" if kind == "usd" else "–"
    sign = "+" if signed else ""
    if kind == "rate":
        return f"{value:{sign}.1%}"
    if kind == "usd":
        return f"${value:{sign},.4f}"
    if kind == "ms":
        return f"{value:{sign},.0f} ms"
    return f"{value:{sign},.0f}"


def metrics_frame(comparison: Comparison, *, a_name: str = "A", b_name: str = "B") -> pd.DataFrame:
    """One row per metric: A, B, the difference (B − A) and whether B is better or worse."""
    return pd.DataFrame(
        [
            {
                "Metric": m.name,
                a_name: _shown(m.a, m.kind),
                b_name: _shown(m.b, m.kind),
                "Difference (B − A)": "" if m.verdict == "same" else _shown(m.difference, m.kind, signed=True),
                "B against A": m.verdict,
            }
            for m in comparison.metrics
        ]
    )


def metrics_styler(comparison: Comparison, *, a_name: str = "A", b_name: str = "B") -> Styler:
    """The metrics table with each difference coloured: green where B improves on A, red where it regresses."""
    frame = metrics_frame(comparison, a_name=a_name, b_name=b_name)
    colours = {"better": f"background-color: {BETTER}", "worse": f"background-color: {WORSE}", "same": ""}

    def paint(row: pd.Series) -> list[str]:
        css = colours[str(row["B against A"])]
        return [css if column in ("Difference (B − A)", "B against A") else "" for column in row.index]

    return frame.style.apply(paint, axis=1)


def regressions(metrics: Sequence[Metric]) -> list[str]:
    """The names of the metrics on which B is worse than A."""
    return [m.name for m in metrics if m.verdict == "worse"]


def verdict_mark(sentence: Mapping[str, Any], escape: Callable[[object], str]) -> str:
    """A verdict, visibly marked: green for supported, red with the failure mode for unsupported."""
    if sentence.get("verdict") == "supported":
        return ":green[:material/check_circle: **supported**]"
    mode = str(sentence.get("failure_mode") or "unsupported").replace("_", " ")
    return f":red[:material/cancel: **unsupported · {escape(mode)}**]"


def _cited(sentence: Mapping[str, Any], escape: Callable[[object], str]) -> str:
    cites = ", ".join(str(c) for c in sentence.get("cites") or [])
    return f" · cites {escape(cites)}" if cites else ""


def sentence_line(index: int, sentence: Mapping[str, Any], escape: Callable[[object], str]) -> str:
    """Markdown of one drafted sentence: number, verdict, citations, then the sentence (escaped)."""
    head = f"{index}\\. {verdict_mark(sentence, escape)}{_cited(sentence, escape)}"
    return f"{head}  \n{escape(sentence.get('text', ''))}"


def check_line(check: Mapping[str, Any], escape: Callable[[object], str]) -> str:
    """Markdown of one sentence the case gives the Verifier: the verdict it got and what was expected."""
    outcome = "as expected" if check.get("passed") else ":red[**not as expected**]"
    expected = escape(check.get("expected", ""))
    head = f"{verdict_mark(check, escape)}{_cited(check, escape)} · {outcome} (expected {expected})"
    return f"{head}  \n{escape(check.get('target', ''))}"


def sentence_checks(case: CaseView | None) -> list[dict[str, Any]]:
    """The case's sentence expectations: sentences given to the Verifier, with the verdict it gave."""
    return [e for e in case.expectations if e.get("kind") == "sentence"] if case else []


def case_heading(case: CaseView | None) -> str:
    """A case's outcome in a line: passed or failed, verified or not, false supports."""
    if case is None:
        return "not in this run"
    outcome = ":green[passed]" if case.passed else ":red[failed]"
    verified = "verified" if case.verified else "not verified"
    false = f" · :red[{case.false_supports} false support{'s' * (case.false_supports != 1)}]"
    return f"{outcome} · {verified}{false if case.false_supports else ''}"


def failed_expectations(case: CaseView | None, escape: Callable[[object], str]) -> str:
    """Markdown naming each expectation the case missed (empty when it met them all)."""
    missed = [e for e in case.expectations if not e.get("passed")] if case else []
    lines = [
        f"{escape(e.get('kind', ''))} “{escape(e.get('target', ''))}”: {escape(e.get('detail', ''))}" for e in missed
    ]
    return "  \n".join([":red[**Missed**]", *lines]) if lines else ""


def canary_rows(report: CanaryReport) -> list[dict[str, str]]:
    """Canary and baseline in two rows: paragraphs, pass rate, false supports, cost per paragraph, latency."""
    return [
        {
            "Arm": arm,
            "Version": figures.version,
            "Paragraphs": str(figures.paragraphs),
            "Pass rate": _shown(figures.pass_rate, "rate"),
            "False supports": str(figures.false_supports),
            "Cost per paragraph": _shown(figures.cost_per_paragraph, "usd") if figures.paragraphs else "–",
            "Latency P50": _shown(figures.latency_p50_ms, "ms"),
        }
        for arm, figures in (("canary", report.canary), ("baseline", report.baseline))
    ]


def history_figure(points: Sequence[HistoryPoint]) -> go.Figure:
    """Pass rate, false supports and cost per run over time, one colour per version."""
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=("Pass rate", "False supports", "Cost"))
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    versions = list(dict.fromkeys(p.version for p in points))
    for i, version in enumerate(versions):
        mine = [p for p in points if p.version == version]
        colour = palette[i % len(palette)]
        times = [p.started_at for p in mine]
        labels = [f"run #{p.run_id} · {p.status}" for p in mine]
        for row, values in enumerate(
            ([p.pass_rate for p in mine], [p.false_supports for p in mine], [p.cost_usd for p in mine]), start=1
        ):
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=values,
                    mode="lines+markers",
                    name=version,
                    legendgroup=version,
                    showlegend=row == 1,
                    marker={"color": colour},
                    line={"color": colour},
                    text=labels,
                ),
                row=row,
                col=1,
            )
    figure.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=2, col=1)
    figure.update_yaxes(tickprefix="$", rangemode="tozero", row=3, col=1)
    figure.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend_title_text="Version")
    return figure


def version_rows(
    described: Sequence[PromptVersion], gates: Mapping[str, GateCheck], serving: AgentDeployment | None
) -> list[dict[str, str]]:
    """Each version of one agent: its file's sha256, whether it serves, and what the release gate says."""
    rows = []
    for item in described:
        gate = gates.get(item.version)
        if item.error:
            verdict = "file broken"
        elif gate is None:
            verdict = "–"
        else:
            verdict = f"passed (run #{gate.passing_run_id})" if gate.passed else "no passing golden run"
        serves = ""
        if serving is not None and item.version == serving.active_version:
            serves = "active"
        elif serving is not None and item.version == serving.canary_version:
            serves = f"canary ({serving.canary_share or 0:.0%})"
        rows.append({"Version": item.version, "sha256": item.sha256[:12], "Serves": serves, "Release gate": verdict})
    return rows


def deployment_rows(status: Sequence[AgentDeployment]) -> list[dict[str, str]]:
    """Per agent: the active version (and since when), the canary with its share."""
    return [
        {
            "Agent": d.agent,
            "Active": d.active_version,
            "Active since": f"{d.active.created_at:%Y-%m-%d %H:%M} UTC" if d.active else "shipped default",
            "Canary": d.canary_version or "–",
            "Canary share": "–" if d.canary_share is None else f"{d.canary_share:.0%}",
            "Canary since": f"{d.canary_since:%Y-%m-%d %H:%M} UTC" if d.canary_since else "–",
        }
        for d in status
    ]


def models_label(models: Mapping[str, str]) -> str:
    """``writer: gpt-4o-mini · …``, or the provider's defaults when the run recorded none."""
    return " · ".join(f"{agent}: {model}" for agent, model in sorted(models.items())) or "provider defaults"
