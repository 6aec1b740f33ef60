"""``python -m core incident ...``: the incident procedure (``core.incidents``, ``core.incident_scope``).

python -m core incident freeze --reason TEXT            kill switch, stop queued model jobs, evidence bundle
python -m core incident scope TRACE_ID [--json]         everything that trace touched
python -m core incident rollback --prompt AGENT=VERSION --reason TEXT
python -m core incident rollback --model AGENT=MODEL --reason TEXT [--tenant SLUG]
python -m core incident thaw [--note TEXT]              release, queue the stopped work again
python -m core incident list | show ID

Every command acts as ``core.cli_common.operator`` (an admin; ``--actor NAME`` names the person) and
is audited. A refusal (already frozen, nothing frozen, unknown trace, unregistered model) exits 1.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import select

from core import db, incident_scope, incidents
from core.cli_common import operator
from core.errors import IncidentError, NotFoundError
from core.models import Tenant


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def cmd_freeze(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    result = incidents.freeze(db.get_engine(), by=by, reason=args.reason)
    incident = result.incident
    print(f"incident {incident.id} frozen: generation is stopped ({incident.reason})")
    if not result.kill_switch_changed:
        print("  the kill switch was engaged already; the incident now holds it")
    print(f"  evidence bundle: {result.bundle.path}")
    print(f"  sha256: {result.bundle.sha256}")
    print(f"  stopped jobs: {len(incident.stopped_jobs)}")
    for job in incident.stopped_jobs:
        print(f"    {job['job_id']}\t{job['kind']}\ttenant {job['tenant_id']}\ttrace {job['trace_id']}")
    print(
        "  running jobs stop at their next model call and save nothing; `incident thaw` queues the stopped work again"
    )
    return 0


def _print_scope(found: incident_scope.TraceScope) -> None:
    data = found.as_json()
    print(f"trace {found.trace_id}")
    print(f"tenant: {data['tenant']['slug']} (id {data['tenant']['id']})")
    t = data["trajectory"]
    print("\ntrajectory:")
    if t is None:
        print("  (no run recorded)")
    else:
        print(
            f"  {t['kind']}, {t['status']}, agents: {', '.join(t['agents']) or '-'}; {t['calls']} calls, "
            f"{t['errors']} errors; started {t['started_at']}, {t['duration_ms'] or 0:.0f} ms"
        )
    print(f"\nspans ({len(data['spans'])}):")
    for s in data["spans"]:
        cost = "-" if s["cost_usd"] is None else f"${s['cost_usd']:.6f}"
        print(
            f"  {s['started_at']}\t{s['kind']}\t{s['name']}\t{s['duration_ms']:.1f} ms\t"
            f"{s['input_tokens']}+{s['output_tokens']} tok\t{cost}\t{s['status']}"
        )
    print(f"\njobs ({len(data['jobs'])}):")
    for j in data["jobs"]:
        print(f"  {j['id']}\t{j['kind']}\t{j['state']}\tby user {j['created_by']}")
        for tr in j["transitions"]:
            print(f"    {tr['at']}\t{tr['from'] or '-'} -> {tr['to']}\t{tr['reason']}")
    print(f"\nparagraphs: {', '.join(map(str, data['paragraphs'])) or '-'}")
    print(f"paragraph versions ({len(data['paragraph_versions'])}):")
    for v in data["paragraph_versions"]:
        print(f"  version {v['id']} (paragraph {v['paragraph_id']} no. {v['number']})\t{v['status']}\t{v['origin']}")
    u = data["usage"]
    print(
        f"\nusage: {u['calls']} events, {u['total_tokens']} tokens ({u['input_tokens']} in, {u['output_tokens']} out), "
        f"${u['cost_usd']:.6f}" + (f", {u['unpriced_calls']} unpriced" if u["unpriced_calls"] else "")
    )
    for e in u["events"]:
        print(
            f"  {e['created_at']}\t{e['agent']}\t{e['model']}\t{e['input_tokens']}+{e['output_tokens']} tok"
            + (f"\t{e['error_class']}" if e["error_class"] else "")
        )
    print(f"\nusers ({len(data['users'])}):")
    for user in data["users"]:
        print(f"  {user['email']} ({user['role']}): {', '.join(user['as'])}")
    for viewer in data["viewers"]:
        print(f"  viewed by {viewer['actor']} at {viewer['at']}")
    print(f"\npolicy violations ({len(data['policy_violations'])}):")
    for p in data["policy_violations"]:
        print(f"  {p['rule']}\t{p['severity']}\t{p['action']}\t{p['agent']} {p['direction']}\t{p['location']}")


def cmd_scope(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    found = incident_scope.scope(db.get_engine(), by=by, trace_id=args.trace_id)
    if args.json:
        print(json.dumps(found.as_json(), indent=1, sort_keys=True))
    else:
        _print_scope(found)
    return 0


def _pair(text: str, what: str) -> tuple[str, str]:
    agent, sep, value = text.partition("=")
    if not sep or not agent.strip() or not value.strip():
        raise IncidentError(f"Write --{what} as AGENT={what.upper()} (e.g. writer=v1), not {text!r}.")
    return agent.strip(), value.strip()


def _tenant_id(slug: str | None) -> int | None:
    if not slug:
        return None
    with db.session_scope() as session:
        found = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if found is None:
        raise NotFoundError(f"There is no tenant {slug!r}; `python -m core accounts tenants` lists them.")
    return int(found)


def cmd_rollback(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    engine = db.get_engine()
    if args.prompt:
        agent, version = _pair(args.prompt, "prompt")
        result = incidents.rollback_prompt(engine, by=by, agent=agent, version=version, reason=args.reason)
        print(f"{agent} prompt rolled back: {version} is active")
    else:
        agent, model = _pair(args.model, "model")
        result = incidents.rollback_model(
            engine, by=by, agent=agent, model=model, reason=args.reason, tenant_id=_tenant_id(args.tenant)
        )
        if result.routing_versions:
            versions = ", ".join(f"tenant {t}: v{v}" for t, v in sorted(result.routing_versions.items()))
            print(f"{agent} routed to {model} on every tier of {result.provider} ({versions})")
        else:
            print(f"{agent} was routed to {model} on {result.provider} already; no routing version saved")
    if result.incident_id is not None:
        print(f"  recorded on incident {result.incident_id}")
    return 0


def cmd_thaw(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    result = incidents.thaw(db.get_engine(), by=by, note=args.note)
    print(f"incident {result.incident.id} thawed: generation is released")
    print(f"  queued again: {len(result.requeued)}")
    for r in result.requeued:
        print(f"    {r['new_job_id']}\t{r['kind']}\t(was {r['job_id']})")
    for r in result.not_requeued:
        print(f"  not queued again: {r['job_id']} ({r['kind']}): {r['reason']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    operator()
    with db.get_engine().connect() as connection:
        found = incidents.list_incidents(connection, limit=args.limit)
    if not found:
        print("no incident recorded")
    for i in found:
        print(f"{i.id}\t{i.state}\t{_when(i.opened_at)}\t{i.opened_by}\t{i.reason}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    operator()
    with db.get_engine().connect() as connection:
        i = incidents.get_incident(connection, args.incident_id)
    print(f"incident {i.id}: {i.state}")
    print(f"  opened {_when(i.opened_at)} by {i.opened_by}: {i.reason}")
    print(f"  evidence: {i.bundle_path or '(not written)'}")
    print(f"  sha256: {i.bundle_sha256 or '-'}")
    print(f"  stopped jobs: {len(i.stopped_jobs)}")
    if i.thawed_at:
        print(f"  thawed {_when(i.thawed_at)} by {i.thawed_by}" + (f": {i.thaw_note}" if i.thaw_note else ""))
    return 0


def _actor(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--actor", metavar="NAME", help="who is at the keyboard (kept in the audit log)")
    return parser


def add_commands(sub: Any) -> None:
    """Add ``incident`` and its actions to the top-level sub-parsers."""
    group = sub.add_parser("incident", help="freeze, scope, roll back, thaw").add_subparsers(
        dest="action", required=True
    )
    freeze = _actor(group.add_parser("freeze", help="kill switch, stop queued model jobs, write the evidence bundle"))
    freeze.add_argument("--reason", required=True)
    freeze.set_defaults(func=cmd_freeze)
    scope = _actor(group.add_parser("scope", help="everything one trace touched"))
    scope.add_argument("trace_id")
    scope.add_argument("--json", action="store_true", help="machine-readable output")
    scope.set_defaults(func=cmd_scope)
    back = _actor(group.add_parser("rollback", help="serve an earlier prompt version, or route an agent to a model"))
    which = back.add_mutually_exclusive_group(required=True)
    which.add_argument("--prompt", metavar="AGENT=VERSION")
    which.add_argument("--model", metavar="AGENT=MODEL")
    back.add_argument("--reason", required=True)
    back.add_argument("--tenant", metavar="SLUG", help="model rollback in this tenant only (default: every tenant)")
    back.set_defaults(func=cmd_rollback)
    thaw = _actor(group.add_parser("thaw", help="release generation and queue the stopped work again"))
    thaw.add_argument("--note", default="")
    thaw.set_defaults(func=cmd_thaw)
    listing = group.add_parser("list", help="incidents, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_list)
    show = group.add_parser("show", help="one incident")
    show.add_argument("incident_id", type=int)
    show.set_defaults(func=cmd_show)
