"""Commands for the model registry (registered by ``core.cli``).

python -m core models list                      every registered model, its status and prices
python -m core models add MODEL [--provider P] [--version V] [--risk-tier low|medium|high]
        [--input-price X --output-price Y [--cached-input-price Z]] [--flag KEY=VALUE ...] [--notes TEXT]
                                                register a model, or update one (unnamed options kept)
python -m core models deprecate MODEL --removal-date YYYY-MM-DD [--reason TEXT]
python -m core models retire MODEL [--reason TEXT]
python -m core models activate MODEL [--reason TEXT]
python -m core models usage                     deprecated models' calls in the last 7 days, days left

The command line acts as an admin (``authz.cli_identity``) of the default tenant; every change is audited.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import date
from typing import Any

from core import db, model_registry
from core.cli_common import operator
from core.errors import ModelRegistryError


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def cmd_list(_args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        registry = model_registry.snapshot(session)
    entries = sorted(registry.entries.values(), key=lambda e: (e.spec.provider, e.model))
    print("model\tprovider\tversion\trisk\tstatus\tremoval\tinput/output/cached USD per 1M\tgovernance")
    for e in entries:
        s = e.spec
        prices = "/".join(_price(p) for p in (s.input_per_mtok, s.output_per_mtok, s.cached_input_per_mtok))
        flags = ", ".join(f"{k}={v}" for k, v in sorted(s.governance.items()))
        removal = e.removal_date.isoformat() if e.removal_date else "-"
        status = registry.status(e.model)
        print(f"{e.model}\t{s.provider}\t{s.version or '-'}\t{s.risk_tier}\t{status}\t{removal}\t{prices}\t{flags}")
    return 0


def _flag(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ModelRegistryError(f"--flag {text!r} is not KEY=VALUE (e.g. --flag pii_allowed=false).")
    try:
        value = json.loads(raw)  # true, false, 30, null
    except json.JSONDecodeError:
        value = raw  # a plain word: approved_by=jane
    return key.strip(), value


def cmd_add(args: argparse.Namespace) -> int:
    admin = operator()
    with db.session_scope() as session:
        existing = model_registry.snapshot(session).entry(args.model)
        if existing is None and not args.provider:
            raise ModelRegistryError(f"{args.model} is new: name its provider with --provider (e.g. openai).")
        spec = existing.spec if existing is not None else model_registry.ModelSpec(args.model, args.provider)
        options = {
            "provider": args.provider,
            "version": args.version,
            "risk_tier": args.risk_tier,
            "input_per_mtok": args.input_price,
            "output_per_mtok": args.output_price,
            "cached_input_per_mtok": args.cached_input_price,
            "notes": args.notes,
        }
        spec = replace(spec, **{k: v for k, v in options.items() if v is not None})
        if args.flag:
            spec = replace(spec, governance={**spec.governance, **dict(_flag(f) for f in args.flag)})
        entry = model_registry.register(session, by=admin, spec=spec)
    print(f"{'updated' if existing else 'registered'} {entry.model} ({entry.spec.provider}, {entry.status})")
    return 0


def cmd_deprecate(args: argparse.Namespace) -> int:
    admin = operator()
    try:
        removal = date.fromisoformat(args.removal_date)
    except ValueError as error:
        raise ModelRegistryError(f"--removal-date {args.removal_date!r} is not a date like 2027-01-31.") from error
    with db.session_scope() as session:
        entry = model_registry.deprecate(session, by=admin, model=args.model, removal_date=removal, reason=args.reason)
    print(f"{entry.model} is deprecated; calls are refused from {removal.isoformat()}")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    admin = operator()
    with db.session_scope() as session:
        entry = model_registry.retire(session, by=admin, model=args.model, reason=args.reason)
    print(f"{entry.model} is retired: calls to it are refused and routing skips it")
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    admin = operator()
    with db.session_scope() as session:
        entry = model_registry.reactivate(session, by=admin, model=args.model, reason=args.reason)
    print(f"{entry.model} is active again")
    return 0


def cmd_usage(_args: argparse.Namespace) -> int:
    admin = operator()
    with db.session_scope() as session:
        usage = model_registry.remaining_usage(session, identity=admin)
    if not usage:
        print("no deprecated model")
    for u in usage:
        cost = "unpriced" if u.cost_usd is None else f"{u.cost_usd:.4f} USD"
        print(f"{u.line()}; {u.input_tokens + u.output_tokens} tokens, {cost} (all workspaces)")
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``python -m core`` parser."""
    group = sub.add_parser("models", help="the model registry and its lifecycle").add_subparsers(
        dest="action", required=True
    )
    group.add_parser("list", help="every registered model, its status and prices").set_defaults(func=cmd_list)
    add = group.add_parser("add", help="register a model, or update one (options not given are kept)")
    add.add_argument("model")
    add.add_argument("--provider", help="openai, anthropic, local, ... (required for a new model)")
    add.add_argument("--version")
    add.add_argument("--risk-tier", choices=model_registry.RISK_TIERS)
    add.add_argument("--input-price", type=float, metavar="USD", help="per 1M input tokens")
    add.add_argument("--output-price", type=float, metavar="USD", help="per 1M output tokens")
    add.add_argument("--cached-input-price", type=float, metavar="USD", help="per 1M cached input tokens")
    add.add_argument(
        "--flag", action="append", metavar="KEY=VALUE", help="governance flag, e.g. pii_allowed=false (repeatable)"
    )
    add.add_argument("--notes")
    add.set_defaults(func=cmd_add)
    deprecate = group.add_parser("deprecate", help="keep a model working, with a warning, until a removal date")
    deprecate.add_argument("model")
    deprecate.add_argument("--removal-date", required=True, metavar="YYYY-MM-DD")
    deprecate.add_argument("--reason", default="")
    deprecate.set_defaults(func=cmd_deprecate)
    for name, func, text in (
        ("retire", cmd_retire, "refuse every call to a model from now on"),
        ("activate", cmd_activate, "make a deprecated or retired model active again"),
    ):
        command = group.add_parser(name, help=text)
        command.add_argument("model")
        command.add_argument("--reason", default="")
        command.set_defaults(func=func)
    group.add_parser("usage", help="deprecated models' calls in the last 7 days").set_defaults(func=cmd_usage)
