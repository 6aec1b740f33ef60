"""Commands for the golden set (registered by ``core.cli``).

python -m core golden run [--prompt AGENT=VERSION ...] [--model AGENT=MODEL ...] [--label TEXT]
        run every case through the real pipeline; exit 0 when it passes, 1 on any regression
        (a failed expectation or a false support), naming the failing cases and expectations
python -m core golden list [--limit N]     the latest runs
python -m core golden show RUN_ID          one run: totals, versions, models, every case
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from core import db, golden_runner
from core.cli_common import operator
from core.errors import GoldenSetError
from core.models import GoldenCaseResult, GoldenRun


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for item in items or []:
        agent, sep, value = item.partition("=")
        if not sep or not agent.strip() or not value.strip():
            raise GoldenSetError(f"{flag} {item!r} is not AGENT=VALUE (e.g. {flag} verifier=v2).")
        pins[agent.strip()] = value.strip()
    return pins


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cost(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:.4f}"


def _print_cases(results: list[GoldenCaseResult]) -> None:
    print("case\tresult\texpectations\tverified\tsupport\tfalse supports\ttokens\tms")
    for r in results:
        ok = sum(e["passed"] for e in r.expectations)
        print(
            f"{r.case_id}\t{'pass' if r.passed else 'FAIL'}\t{ok}/{len(r.expectations)}\t"
            f"{'yes' if r.verified else 'no'}\t{_rate(r.sentence_support_rate)}\t{r.false_supports}\t"
            f"{r.input_tokens + r.output_tokens}\t{r.latency_ms:.0f}"
        )


def _print_totals(run: GoldenRun) -> None:
    print(
        f"run {run.id} {run.status.upper()}: {run.cases_passed}/{run.cases_total} cases, "
        f"{run.expectations_passed}/{run.expectations_total} expectations, {run.false_supports} false supports; "
        f"sentence support {_rate(run.sentence_support_rate)}, paragraphs verified "
        f"{_rate(run.paragraph_verification_rate)}; {run.input_tokens + run.output_tokens} tokens, "
        f"{_cost(run.cost_usd)}"
    )
    print(
        "prompts: "
        + ", ".join(f"{a}={v} ({run.prompt_hashes.get(a, '?')[:12]})" for a, v in run.prompt_versions.items())
    )
    print("models:  " + ", ".join(f"{a}={m}" for a, m in run.models.items()))
    print(f"set:     {run.set_sha256[:12]} ({run.provider} provider){f'; label: {run.label}' if run.label else ''}")


def _print_failures(results: list[GoldenCaseResult]) -> None:
    for r in results:
        if r.passed:
            continue
        print(f"REGRESSION in {r.case_id}:", file=sys.stderr)
        for e in r.expectations:
            if not e["passed"]:
                print(f"  - {e['kind']} {e['target']!r}: {e['detail']}", file=sys.stderr)
        if r.false_supports and all(e["passed"] for e in r.expectations):
            print(
                f"  - {r.false_supports} drafted sentence(s) shown as supported hold what the case forbids",
                file=sys.stderr,
            )


def cmd_run(args: argparse.Namespace) -> int:
    prompt_pins = _pairs(args.prompt, "--prompt")
    model_pins = _pairs(args.model, "--model")
    actor = operator()
    wall = time.perf_counter()
    run = golden_runner.run_golden(
        db.get_engine(),
        prompt_pins=prompt_pins,
        model_pins=model_pins,
        label=args.label or "",
        triggered_by=actor.name,
        progress=lambda n, total, case: print(f"[{n}/{total}] {case}", file=sys.stderr),
    )
    with db.session_scope() as session:
        results = golden_runner.case_results(session, run_id=run.id)
    _print_cases(results)
    _print_totals(run)
    print(f"wall time: {time.perf_counter() - wall:.2f} s")
    if run.status != "passed":
        _print_failures(results)
        print(f"golden run {run.id} failed: {', '.join(run.failing_cases)}", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        runs = golden_runner.list_runs(session, limit=args.limit)
    if not runs:
        print("no golden run yet: `python -m core golden run` runs the set")
        return 0
    print("id\tstatus\tstarted\tcases\tfalse supports\tprompts\tlabel")
    for r in runs:
        versions = ", ".join(f"{a}={v}" for a, v in r.prompt_versions.items())
        print(
            f"{r.id}\t{r.status}\t{r.started_at:%Y-%m-%d %H:%M}\t{r.cases_passed}/{r.cases_total}\t"
            f"{r.false_supports}\t{versions}\t{r.label}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        run = golden_runner.get_run(session, run_id=args.run_id)
        results = golden_runner.case_results(session, run_id=run.id)
    _print_totals(run)
    print(f"started {run.started_at:%Y-%m-%d %H:%M:%S} by {run.triggered_by or '-'}; {run.latency_ms / 1000:.2f} s")
    if run.error:
        print(f"error: {run.error}")
    _print_cases(results)
    for r in results:
        print(f"\n{r.case_id}: {r.paragraph_text or '(no paragraph)'}")
        for s in r.sentences:
            mode = f" ({s['failure_mode']})" if s["failure_mode"] else ""
            print(f"  [{', '.join(s['cites'])}] {s['verdict']}{mode}: {s['text']}")
        for e in r.expectations:
            print(f"  {'ok  ' if e['passed'] else 'FAIL'} {e['kind']} {e['target']!r}: {e['detail']}")
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``python -m core`` parser."""
    group = sub.add_parser("golden", help="the golden set: regression runs that gate a release").add_subparsers(
        dest="action", required=True
    )
    run = group.add_parser("run", help="run the whole set; exit 1 on any regression")
    run.add_argument("--prompt", action="append", metavar="AGENT=VERSION", help="pin a prompt version (repeatable)")
    run.add_argument("--model", action="append", metavar="AGENT=MODEL", help="pin a model (repeatable)")
    run.add_argument("--label", metavar="TEXT", help="a note stored with the run")
    run.set_defaults(func=cmd_run)
    listing = group.add_parser("list", help="the latest golden runs")
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="runs to list (default 20)")
    listing.set_defaults(func=cmd_list)
    show = group.add_parser("show", help="one run with every case")
    show.add_argument("run_id", type=int)
    show.set_defaults(func=cmd_show)
