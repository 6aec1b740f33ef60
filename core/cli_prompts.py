"""Commands for prompt deployments and model rollback (registered by ``core.cli``).

python -m core prompts status                       active version and canary per agent, recent history
python -m core prompts activate AGENT VERSION [--reason TEXT]        needs a passing golden run of that file
python -m core prompts canary AGENT VERSION --share 0.2 [--reason TEXT]   same gate; one canary per agent
python -m core prompts report AGENT                 the canary against its baseline, and the verdict
python -m core prompts promote AGENT [--reason TEXT]
python -m core prompts rollback AGENT --reason TEXT [--to VERSION]
python -m core prompts retire AGENT [--reason TEXT]  end a canary without judging it
python -m core prompts evaluate                     judge every canary now; roll back those that fail
python -m core routing restore VERSION              save an earlier routing version as the newest

The command line acts as an admin (``authz.cli_identity``) of the default tenant; ``--actor NAME``
names the person at the keyboard. Every change is audited; a refusal (no passing golden run, no
canary) prints why and exits 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from core import db, deployments, routing
from core.canary import ArmFigures, CanaryReport
from core.cli_common import operator
from core.settings import get_settings


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def cmd_status(_args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        agents = deployments.status(session, history=5)
    for a in agents:
        since = f", since {_when(a.active.created_at)} by {a.active.created_by}" if a.active else " (shipped default)"
        print(f"{a.agent}: {a.active_version} sha256 {a.active_sha256[:12] or '-'}{since}")
        if a.canary is not None:
            share = a.canary.canary_share or 0
            print(f"  canary {a.canary.version} on {share:.0%} of paragraphs since {_when(a.canary_since)}")
        for r in a.history:
            if not r.serving:
                kind = "canary" if r.was_canary else "active"
                span = f"{_when(r.created_at)} - {_when(r.ended_at)}"
                print(f"  was {kind} {r.version} {span}: {r.status} ({r.ended_reason})")
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        row = deployments.activate(session, by=by, agent=args.agent, version=args.version, reason=args.reason)
    print(f"{row.agent} {row.version} is active (golden run #{row.golden_run_id})")
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        row = deployments.start_canary(
            session, by=by, agent=args.agent, version=args.version, share=args.share, reason=args.reason
        )
    print(
        f"{row.agent} {row.version} serves {args.share:.0%} of paragraphs as a canary (golden run #{row.golden_run_id})"
    )
    return 0


def _arm(label: str, arm: ArmFigures) -> str:
    rate = "-" if arm.pass_rate is None else f"{arm.pass_rate:.0%}"
    cost = "-" if arm.cost_per_paragraph is None else f"{arm.cost_per_paragraph:.4f} USD"
    p50 = "-" if arm.latency_p50_ms is None else f"{arm.latency_p50_ms:.0f} ms"
    return (
        f"  {label} {arm.version}: {arm.paragraphs} paragraphs, pass rate {rate}, "
        f"{arm.false_supports} false supports, {cost} per paragraph, P50 {p50}"
    )


def _print_report(report: CanaryReport) -> None:
    print(f"{report.agent}: canary {report.canary.version} on {report.share:.0%} since {_when(report.since)}")
    print(_arm("canary  ", report.canary))
    print(_arm("baseline", report.baseline))
    print(f"  verdict: {report.verdict}: {report.reason}")


def cmd_report(args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        report = deployments.canary_report(session, agent=args.agent)
    _print_report(report)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        row = deployments.promote(session, by=by, agent=args.agent, reason=args.reason)
    print(f"{row.agent} {row.version} is active (promoted)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        row = deployments.rollback(session, by=by, agent=args.agent, reason=args.reason, to_version=args.to)
        active = deployments.active_versions(session)[args.agent]
    if row is None:
        print(f"{args.agent} canary rolled back; {active} serves every paragraph again")
    else:
        print(f"{row.agent} rolled back: {row.version} is active")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        row = deployments.retire(session, by=by, agent=args.agent, reason=args.reason)
    print(f"{row.agent} canary {row.version} retired")
    return 0


def cmd_evaluate(_args: argparse.Namespace) -> int:
    operator()
    decisions = deployments.evaluate_canaries(db.get_engine())
    if not decisions:
        print("no canary running")
    for d in decisions:
        print(f"{d.agent} {d.version}: {d.action.replace('_', ' ')}")
        print(_arm("canary  ", d.report.canary))
        print(_arm("baseline", d.report.baseline))
        print(f"  {d.report.reason}")
    return 0


def cmd_routing_restore(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    with db.session_scope() as session:
        stored = routing.restore_config(
            session, tenant_id=by.tenant_id, by=by, version=args.version, settings=get_settings()
        )
    print(f"routing version {args.version} restored as {stored.label}")
    return 0


def _actor(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--actor", metavar="NAME", help="who is at the keyboard (kept in the audit log)")
    return parser


def add_commands(group: Any) -> None:
    """Add the deployment commands to the ``prompts`` sub-parsers ``core.cli`` made."""
    group.add_parser("status", help="active version and canary per agent").set_defaults(func=cmd_status)
    activate = _actor(group.add_parser("activate", help="make a version active (needs a passing golden run)"))
    activate.add_argument("agent")
    activate.add_argument("version")
    activate.add_argument("--reason", default="")
    activate.set_defaults(func=cmd_activate)
    trial = _actor(group.add_parser("canary", help="let a version serve a share of paragraphs"))
    trial.add_argument("agent")
    trial.add_argument("version")
    trial.add_argument("--share", type=float, required=True, help="share of paragraphs, e.g. 0.2")
    trial.add_argument("--reason", default="")
    trial.set_defaults(func=cmd_canary)
    report = group.add_parser("report", help="the canary against its baseline, and the verdict")
    report.add_argument("agent")
    report.set_defaults(func=cmd_report)
    promote = _actor(group.add_parser("promote", help="make the canary the active version"))
    promote.add_argument("agent")
    promote.add_argument("--reason", default="")
    promote.set_defaults(func=cmd_promote)
    back = _actor(group.add_parser("rollback", help="end the canary, or return to the previous active version"))
    back.add_argument("agent")
    back.add_argument("--to", metavar="VERSION", help="the version to return to (must have passed the gate once)")
    back.add_argument("--reason", required=True)
    back.set_defaults(func=cmd_rollback)
    retire = _actor(group.add_parser("retire", help="end the canary without judging it"))
    retire.add_argument("agent")
    retire.add_argument("--reason", default="")
    retire.set_defaults(func=cmd_retire)
    group.add_parser("evaluate", help="judge every canary now; roll back those that fail").set_defaults(
        func=cmd_evaluate
    )


def add_routing_commands(group: Any) -> None:
    """Add ``routing restore`` to the ``routing`` sub-parsers ``core.cli`` made."""
    restore = _actor(group.add_parser("restore", help="save an earlier routing version as the newest (rollback)"))
    restore.add_argument("version", type=int, help="as the Routing page's history lists it (0: built-in)")
    restore.set_defaults(func=cmd_routing_restore)
