"""``python -m core``: what the pages do, from a terminal.

python -m core migrate                 bring the database schema to head
python -m core demo [--if-empty]       seed the demo manuscript
python -m core manuscripts             list manuscripts
python -m core ingest MANUSCRIPT_ID FILE.pdf ...
python -m core facts MANUSCRIPT_ID [--query Q] [--top-k K]
python -m core paragraph add MANUSCRIPT_ID "brief"
python -m core draft PARAGRAPH_ID
python -m core show PARAGRAPH_ID
python -m core verify FILE.jsonl [-o OUT.jsonl]
python -m core prompts lock
python -m core prompts status|activate|canary|report|promote|rollback|retire|evaluate   (core/cli_prompts.py)
python -m core kill-switch status      kill switch and open breakers
python -m core kill-switch engage --reason TEXT [--actor NAME]   (the CLI acts as an admin, named cli:<os user>)
python -m core kill-switch release [--actor NAME]
python -m core breakers                every circuit breaker and its state
python -m core breakers reset NAME [--actor NAME]
python -m core routing show          thresholds and the model per tier per agent
python -m core routing dry-run "brief" [--manuscript ID]   tier, score breakdown and model per agent
python -m core routing restore VERSION   save an earlier routing version as the newest (model rollback)
python -m core keys new [--id ID]      a fresh encryption key line, id:base64
python -m core keys status             active key, sealed rows per key id
python -m core keys rotate [--batch N] [--max-batches N]   re-encrypt everything to the active key
python -m core alerts evaluate        evaluate every tenant's alert rules now; print what fires
python -m core alerts list [--limit N]  recent alert events of every tenant, firing ones first
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core import (
    breakers,
    cli_accounts,
    cli_audit,
    cli_backup,
    cli_drill,
    cli_golden,
    cli_incident,
    cli_models,
    cli_prompts,
    cli_release,
    controls,
    db,
    prompts,
)
from core.cli_common import operator
from core.errors import WorkbenchError
from core.settings import get_settings
from core.tenancy import Identity, bootstrap


def _identity() -> Identity:
    from core import environments

    environments.prepare_schema()  # local: migrate (a fresh data directory works); elsewhere: refuse an old schema
    with db.session_scope() as session:
        return bootstrap(session)


def cmd_migrate(_args: argparse.Namespace) -> int:
    db.migrate()
    print("database schema is at head")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from core.demo import demo_exists, seed_demo

    identity = _identity()
    with db.session_scope() as session:
        if args.if_empty and demo_exists(session, tenant_id=identity.tenant_id):
            print("demo manuscript already present")
            return 0
        manuscript = seed_demo(session, identity=identity, progress=lambda f, m: print(f"[{f:4.0%}] {m}"))
        print(f"seeded demo manuscript {manuscript.id}: {manuscript.title}")
    return 0


def cmd_manuscripts(_args: argparse.Namespace) -> int:
    from core.manuscripts import list_manuscripts

    identity = _identity()
    with db.session_scope() as session:
        for m in list_manuscripts(session, tenant_id=identity.tenant_id):
            print(f"{m.id}\t{m.title}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from core.pipeline import new_trace_id
    from core.sources import add_source

    identity = _identity()
    failures = 0
    for path in args.files:
        try:
            with db.session_scope() as session:
                result = add_source(
                    session,
                    identity=identity,
                    manuscript_id=args.manuscript_id,
                    filename=Path(path).name,
                    data=Path(path).read_bytes(),
                    trace_id=new_trace_id(),
                )
                print(
                    f"{path}: document {result.document.id}, {result.document.page_count} pages, "
                    f"{result.facts_added} facts ({result.facts_rejected} rejected)"
                )
        except WorkbenchError as error:
            failures += 1
            print(f"{path}: {error}", file=sys.stderr)
        except OSError as error:
            failures += 1
            print(f"{path}: cannot read the file ({error.strerror}).", file=sys.stderr)
    return 1 if failures else 0


def cmd_facts(args: argparse.Namespace) -> int:
    from core.facts import list_facts
    from core.retrieval import search_corpus

    identity = _identity()
    with db.session_scope() as session:
        if args.query:
            for hit in search_corpus(
                session,
                tenant_id=identity.tenant_id,
                manuscript_id=args.manuscript_id,
                query=args.query,
                top_k=args.top_k,
            ):
                print(f"{hit.ref}\t{hit.score:.3f}\tp.{hit.page}\t{hit.text}")
        else:
            for fact in list_facts(session, tenant_id=identity.tenant_id, manuscript_id=args.manuscript_id):
                print(f"{fact.ref}\t{fact.kind}\tp.{fact.page}\t{fact.text}")
    return 0


def cmd_paragraph_add(args: argparse.Namespace) -> int:
    from core.manuscripts import add_paragraph

    identity = _identity()
    with db.session_scope() as session:
        paragraph = add_paragraph(
            session, tenant_id=identity.tenant_id, manuscript_id=args.manuscript_id, brief=args.brief
        )
        print(paragraph.id)
    return 0


def cmd_draft(args: argparse.Namespace) -> int:
    from core.pipeline import draft_paragraph

    identity = _identity()
    with db.session_scope() as session:
        version = draft_paragraph(
            session, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=args.paragraph_id
        )
        _print_version(version)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from core.manuscripts import latest_version

    identity = _identity()
    with db.session_scope() as session:
        version = latest_version(session, tenant_id=identity.tenant_id, paragraph_id=args.paragraph_id)
        if version is None:
            print("no version yet: run `python -m core draft PARAGRAPH_ID`")
            return 1
        _print_version(version)
    return 0


def _version_by_number(session: Any, identity: Identity, paragraph_id: int, number: int) -> Any:
    from core.errors import NotFoundError
    from core.manuscripts import list_versions

    for version in list_versions(session, tenant_id=identity.tenant_id, paragraph_id=paragraph_id):
        if version.number == number:
            return version
    raise NotFoundError(f"Paragraph {paragraph_id} has no version {number}; `python -m core history` lists them.")


def cmd_history(args: argparse.Namespace) -> int:
    from core.manuscripts import get_paragraph, list_versions

    identity = _identity()
    with db.session_scope() as session:
        paragraph = get_paragraph(session, tenant_id=identity.tenant_id, paragraph_id=args.paragraph_id)
        for v in list_versions(session, tenant_id=identity.tenant_id, paragraph_id=args.paragraph_id):
            accepted = "  (accepted)" if paragraph.accepted_version_id == v.id else ""
            print(f"{v.number}\t{v.status}\t{v.origin}\t{v.created_at:%Y-%m-%d %H:%M}{accepted}")
    return 0


def cmd_reverify(args: argparse.Namespace) -> int:
    from core.pipeline import reverify

    identity = _identity()
    with db.session_scope() as session:
        version = _version_by_number(session, identity, args.paragraph_id, args.version)
        _print_version(
            reverify(
                session,
                tenant_id=identity.tenant_id,
                user_id=identity.user_id,
                paragraph_id=args.paragraph_id,
                version_id=version.id,
            )
        )
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from core.manuscripts import accept_version

    identity = _identity()
    with db.session_scope() as session:
        version = _version_by_number(session, identity, args.paragraph_id, args.version)
        accept_version(session, tenant_id=identity.tenant_id, paragraph_id=args.paragraph_id, version_id=version.id)
        print(f"paragraph {args.paragraph_id}: version {args.version} accepted")
    return 0


def _print_version(version: Any) -> None:
    print(f"version {version.number} ({version.status}, {version.origin}, trace {version.trace_id})")
    for s in version.sentences:
        mark = "supported" if s.verdict == "supported" else f"UNSUPPORTED {s.failure_mode}: {s.reason}"
        print(f"  {s.ordinal}. {s.text} [{', '.join(s.cites)}] -> {mark}")


def _read_jsonl(stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, f"line {number} is not JSON: {error.msg}"
            continue
        if not isinstance(item, dict) or not isinstance(item.get("sentence"), str):
            yield number, None, f'line {number} needs a "sentence" string'
            continue
        yield number, item, None


def cmd_verify(args: argparse.Namespace) -> int:
    from core.gateway import CallContext
    from core.pipeline import new_trace_id
    from core.verify_file import verify_item

    if args.file != "-" and not Path(args.file).is_file():
        print(f"error: no such file: {args.file}", file=sys.stderr)
        return 2
    identity = _identity()
    bad = 0
    with contextlib.ExitStack() as stack:
        source = sys.stdin if args.file == "-" else stack.enter_context(open(args.file, encoding="utf-8"))
        out = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        session = stack.enter_context(db.session_scope())
        ctx = CallContext(session=session, tenant_id=identity.tenant_id, trace_id=new_trace_id())
        for number, item, problem in _read_jsonl(source):
            if problem or item is None:
                bad += 1
                print(f"error: {problem}", file=sys.stderr)
                continue
            try:
                result = verify_item(item, ctx=ctx)
            except WorkbenchError as error:
                bad += 1
                print(f"error: line {number}: {error}", file=sys.stderr)
                continue
            out.write(json.dumps({**item, **result}, ensure_ascii=False) + "\n")
            out.flush()
    return 2 if bad else 0


def cmd_prompts_lock(_args: argparse.Namespace) -> int:
    added = prompts.lock_new_versions(get_settings().prompts_dir)  # the folder the gateway reads
    print("locked: " + (", ".join(added) if added else "nothing new"))
    return 0


def _migrated_engine() -> Engine:
    from core import environments

    environments.prepare_schema()  # local: migrate, idempotent; elsewhere: refuse a schema behind head
    return db.get_engine()


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "never"


def cmd_kill_switch_status(_args: argparse.Namespace) -> int:
    status = controls.status(_migrated_engine())
    switch = status.kill_switch
    print(f"kill switch: {'engaged' if switch.engaged else 'released'}")
    print(f"  reason: {switch.reason or '-'}")
    print(f"  actor:  {switch.actor or '-'}")
    print(f"  since:  {_when(switch.changed_at)}")
    for b in status.open_breakers:
        print(f"breaker {b.name}: {b.state.replace('_', '-')} since {_when(b.opened_at)}: {b.reason}")
    return 0


def cmd_kill_switch_engage(args: argparse.Namespace) -> int:
    if not (args.reason or "").strip():
        print(
            "error: say why: `python -m core kill-switch engage --reason TEXT`; the reason is shown on every page.",
            file=sys.stderr,
        )
        return 2
    engine = _migrated_engine()
    actor = operator(args.actor)
    if controls.set_kill_switch(engine, engaged=True, reason=args.reason, actor=actor):
        print(f"kill switch engaged by {actor.name}: {args.reason.strip()}")
    else:
        switch = controls.status(engine).kill_switch
        print(f"kill switch already engaged by {switch.actor} since {_when(switch.changed_at)}: {switch.reason}")
    return 0


def cmd_kill_switch_release(args: argparse.Namespace) -> int:
    engine = _migrated_engine()
    actor = operator(args.actor)
    if controls.set_kill_switch(engine, engaged=False, reason="", actor=actor):
        print(f"kill switch released by {actor.name}")
    else:
        print("kill switch was not engaged; nothing changed")
    return 0


def cmd_breakers(_args: argparse.Namespace) -> int:
    rows = breakers.list_breakers(_migrated_engine())
    if not rows:
        print("no breakers yet: each appears with the first call it guards")
        return 0
    print("name\tstate\topened at\twindow failures/total\treason")
    for b in rows:
        opened = _when(b.opened_at) if b.opened_at else "-"
        print(f"{b.name}\t{b.state}\t{opened}\t{b.window_failures}/{b.window_total}\t{b.reason or '-'}")
    return 0


def cmd_breakers_reset(args: argparse.Namespace) -> int:
    engine = _migrated_engine()
    names = [b.name for b in breakers.list_breakers(engine)]
    if args.name not in names:
        known = ", ".join(names) or "none yet"
        print(
            f"error: no breaker named {args.name!r} (known: {known}); `python -m core breakers` lists them.",
            file=sys.stderr,
        )
        return 2
    actor = operator(args.actor)
    if breakers.reset(engine, args.name, actor=actor):
        print(f"breaker {args.name} reset to closed by {actor.name}")
    else:
        print(f"breaker {args.name} is already closed; nothing to reset")
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    from core import keys

    print(keys.new_key_line(args.id))
    print(
        "put it first in WORKBENCH_ENCRYPTION_KEYS (the old keys after it), restart, then run "
        "`python -m core keys rotate`",
        file=sys.stderr,
    )
    return 0


def cmd_keys_status(_args: argparse.Namespace) -> int:
    from core import keys

    state = keys.status(_migrated_engine(), get_settings())
    print(f"active key: {state.active_id}" + (" (development key)" if state.development else ""))
    if state.development_key_file:
        print(f"  development key file: {state.development_key_file}; set WORKBENCH_ENCRYPTION_KEYS in production")
    for table, by_key in state.counts.items():
        listed = ", ".join(f"{kid}: {n}" for kid, n in sorted(by_key.items())) or "none"
        print(f"{table}: {listed}")
    for kid, n in sorted(state.missing.items()):
        print(f"MISSING from the key ring: key '{kid}' seals {n} rows; they cannot be opened until it is added back")
    print(f"rows to rotate to the active key: {state.to_rotate}")
    return 1 if state.missing else 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from core import keys

    engine = _migrated_engine()
    result = keys.rotate(
        engine, get_settings(), actor=operator(), batch=args.batch, max_batches=args.max_batches, progress=print
    )
    done = sum(result.rotated.values())
    if result.complete:
        print(f"rotation complete: {done} rows re-encrypted; every sealed row is under the active key")
        return 0
    print(f"rotation stopped after {done} rows; {result.remaining} remain: run `python -m core keys rotate` again")
    return 3


def _add_key_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="encryption keys of trace content").add_subparsers(dest="action", required=True)
    new = keys.add_parser("new", help="print a fresh key line id:base64 (nothing is stored)")
    new.add_argument("--id", help="the key's id (default: key-YYYYMMDD-xxxx)")
    new.set_defaults(func=cmd_keys_new)
    keys.add_parser("status", help="active key and sealed rows per key id").set_defaults(func=cmd_keys_status)
    rotate = keys.add_parser("rotate", help="re-encrypt every sealed row to the active key, in batches")
    rotate.add_argument("--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)")
    rotate.add_argument("--max-batches", type=int, metavar="N", help="stop after N batches (run again to go on)")
    rotate.set_defaults(func=cmd_keys_rotate)


def _add_control_commands(sub: Any) -> None:
    switch = sub.add_parser("kill-switch", help="freeze or resume all generation").add_subparsers(
        dest="action", required=True
    )
    switch.add_parser("status", help="show the kill switch and open breakers").set_defaults(func=cmd_kill_switch_status)
    engage = switch.add_parser("engage", help="stop every model call and new generation job now")
    engage.add_argument("--reason", metavar="TEXT", help="why (required; shown to everyone on every page)")
    engage.add_argument("--actor", metavar="NAME", help="who engages it (default: the OS user)")
    engage.set_defaults(func=cmd_kill_switch_engage)
    release = switch.add_parser("release", help="let generation run again")
    release.add_argument("--actor", metavar="NAME", help="who releases it (default: the OS user)")
    release.set_defaults(func=cmd_kill_switch_release)
    listing = sub.add_parser("breakers", help="list circuit breakers, or reset one")
    listing.set_defaults(func=cmd_breakers)
    reset = listing.add_subparsers(dest="action").add_parser("reset", help="close a breaker by hand")
    reset.add_argument("name", help="breaker name as `python -m core breakers` lists it, e.g. provider:openai")
    reset.add_argument("--actor", metavar="NAME", help="who resets it (default: the OS user)")
    reset.set_defaults(func=cmd_breakers_reset)


def _tenants(engine: Engine) -> dict[int, str]:
    from sqlalchemy import select

    from core.models import Tenant

    with engine.connect() as connection:
        return {int(i): str(slug) for i, slug in connection.execute(select(Tenant.id, Tenant.slug).order_by(Tenant.id))}


def cmd_alerts_evaluate(_args: argparse.Namespace) -> int:
    from core import alerts

    engine = _migrated_engine()
    slugs = _tenants(engine)
    firing = 0
    for tenant_id, results in alerts.evaluate_all(engine).items():
        for result in results:
            if result.firing:
                firing += 1
                print(f"{slugs.get(tenant_id, tenant_id)}\t{result.severity}\t{result.rule}\t{result.message}")
    if not firing:
        print(f"no alert firing ({len(slugs)} tenant(s), {len(alerts.RULES)} rules each)")
    return 0  # firing alerts are news, not a failure of the command


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from core import alerts

    engine = _migrated_engine()
    shown = 0
    with db.session_scope(engine) as session:
        for tenant_id, slug in _tenants(engine).items():
            events = alerts.active_alerts(session, tenant_id=tenant_id) + [
                e for e in alerts.alert_history(session, tenant_id=tenant_id, limit=args.limit) if e.state != "firing"
            ]
            for e in events[: args.limit]:
                shown += 1
                until = f"resolved {_when(e.resolved_at)}" if e.resolved_at else f"last seen {_when(e.last_seen_at)}"
                print(f"{slug}\t{e.state}\t{e.severity}\t{e.rule}\tfired {_when(e.fired_at)}, {until}\t{e.message}")
    if not shown:
        print("no alert has fired yet: `python -m core alerts evaluate` checks the rules now")
    return 0


def _add_alert_commands(sub: Any) -> None:
    group = sub.add_parser("alerts", help="alert rules and their events").add_subparsers(dest="action", required=True)
    group.add_parser("evaluate", help="evaluate every tenant's alert rules now").set_defaults(func=cmd_alerts_evaluate)
    listing = group.add_parser("list", help="recent alert events of every tenant, firing first")
    listing.add_argument("--limit", type=int, default=20, help="events per tenant (default 20)")
    listing.set_defaults(func=cmd_alerts_list)


def cmd_routing_show(_args: argparse.Namespace) -> int:
    from core import routing
    from core.providers import get_provider

    identity, settings = _identity(), get_settings()
    provider = get_provider(settings.provider)
    with db.session_scope() as session:
        stored = routing.current_config(session, tenant_id=identity.tenant_id, settings=settings)
    config = stored.config
    print(f"{stored.label}" + (f", saved by {stored.actor} on {_when(stored.created_at)}" if stored.version else ""))
    print(f"routing {'on' if config.enabled else 'off'}: simple below {config.simple_below:g}, complex from "
          f"{config.complex_from:g}")  # fmt: skip
    print(f"models on the {provider.name} provider (agent: simple / medium / complex; override):")
    for agent, default in routing.provider_defaults(provider, settings).items():
        tiers = " / ".join(config.tier_model(provider.name, agent, t) or f"({default})" for t in routing.TIERS)
        print(f"  {agent}: {tiers}; override {config.override(provider.name, agent) or 'none'}")
    for model in routing.unpriced_models(config, settings):
        print(f"warning: {model} is not in the price table; its calls are recorded without a cost", file=sys.stderr)
    return 0


def cmd_routing_dry_run(args: argparse.Namespace) -> int:
    from core import routing
    from core.providers import get_provider

    identity, settings = _identity(), get_settings()
    with db.session_scope() as session:
        stored = routing.current_config(session, tenant_id=identity.tenant_id, settings=settings)
        facts = (
            routing.brief_facts(session, tenant_id=identity.tenant_id, manuscript_id=args.manuscript, brief=args.brief)
            if args.manuscript is not None
            else []
        )
    result = routing.dry_run(args.brief, facts, stored, get_provider(settings.provider), settings)
    judged = result.paragraph
    print(f"score {judged.score:g} of 100 -> {stored.config.tier(judged.score)} ({len(facts)} facts)")
    for c in judged.components:
        print(f"  {c.contribution:5.1f} of {c.weight:g}  {c.label}: {c.value:g} (full at {c.saturates_at:g})")
    for caveat in judged.caveats:
        print(f"caveat: {caveat}")
    for agent, route in result.routes.items():
        print(f"{agent}\t{route.tier}\t{route.model}\t{route.reason}")
    return 0


def _add_routing_commands(sub: Any) -> None:
    group = sub.add_parser("routing", help="model routing by complexity").add_subparsers(dest="action", required=True)
    group.add_parser("show", help="the current routing configuration").set_defaults(func=cmd_routing_show)
    dry = group.add_parser("dry-run", help="the tier, score and model per agent a brief would get")
    dry.add_argument("brief")
    dry.add_argument(
        "--manuscript", type=int, metavar="ID", help="judge the brief with the facts this manuscript finds"
    )
    dry.set_defaults(func=cmd_routing_dry_run)
    cli_prompts.add_routing_commands(group)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="OpusBlocks Workbench from the terminal.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="bring the database schema to head").set_defaults(func=cmd_migrate)
    demo = sub.add_parser("demo", help="seed the demo manuscript from generated PDFs")
    demo.add_argument("--if-empty", action="store_true", help="do nothing if the demo is already there")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("manuscripts", help="list manuscripts").set_defaults(func=cmd_manuscripts)
    ingest = sub.add_parser("ingest", help="add PDFs to a manuscript and extract their facts")
    ingest.add_argument("manuscript_id", type=int)
    ingest.add_argument("files", nargs="+")
    ingest.set_defaults(func=cmd_ingest)
    facts = sub.add_parser("facts", help="list or search a manuscript's facts")
    facts.add_argument("manuscript_id", type=int)
    facts.add_argument("--query")
    facts.add_argument("--top-k", type=int, default=8)
    facts.set_defaults(func=cmd_facts)
    paragraph = sub.add_parser("paragraph", help="paragraph blocks").add_subparsers(dest="action", required=True)
    add = paragraph.add_parser("add", help="add a paragraph block with its brief")
    add.add_argument("manuscript_id", type=int)
    add.add_argument("brief")
    add.set_defaults(func=cmd_paragraph_add)
    draft = sub.add_parser("draft", help="draft, verify and repair a paragraph")
    draft.add_argument("paragraph_id", type=int)
    draft.set_defaults(func=cmd_draft)
    show = sub.add_parser("show", help="show a paragraph's latest version with verdicts")
    show.add_argument("paragraph_id", type=int)
    show.set_defaults(func=cmd_show)
    history = sub.add_parser("history", help="list a paragraph's versions")
    history.add_argument("paragraph_id", type=int)
    history.set_defaults(func=cmd_history)
    for name, func, text in (
        ("reverify", cmd_reverify, "verify a version again, saved as a new version"),
        ("accept", cmd_accept, "accept a verified version for the manuscript"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("paragraph_id", type=int)
        command.add_argument("version", type=int, help="version number, as `history` lists it")
        command.set_defaults(func=func)
    verify = sub.add_parser(
        "verify",
        help='verify sentences from JSONL: {"sentence", "facts": [{"id", "text"}], "cited": [ids]} per line',
    )
    verify.add_argument("file", help="JSONL file, or - for standard input")
    verify.add_argument("-o", "--output", help="write results here instead of standard output")
    verify.set_defaults(func=cmd_verify)
    prompt = sub.add_parser("prompts", help="prompt registry").add_subparsers(dest="action", required=True)
    prompt.add_parser("lock", help="pin new prompt versions in prompts.lock.json").set_defaults(func=cmd_prompts_lock)
    cli_prompts.add_commands(prompt)
    _add_control_commands(sub)
    _add_key_commands(sub)
    _add_alert_commands(sub)
    _add_routing_commands(sub)
    for module in (cli_accounts, cli_audit, cli_models, cli_backup, cli_golden, cli_release, cli_incident, cli_drill):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:
        url = make_url(get_settings().resolved_database_url).render_as_string(hide_password=True)
        print(
            f"error: the database at {url} cannot be reached or used ({type(error.orig).__name__}). "
            "Check that it is running and that DATABASE_URL is right.",
            file=sys.stderr,
        )
        return 1
