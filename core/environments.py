"""Settings profiles by environment (``WORKBENCH_ENV``): what each one lets a process start with.

============  ===============  =====================  ==================
environment   development key  schema behind head     unpinned prompts
============  ===============  =====================  ==================
local         allowed (warns)  migrated on start      allowed (v1)
staging       refused          refused (no migrate)   warned
production    refused          refused (no migrate)   refused
============  ===============  =====================  ==================

The web app, ``python -m workers`` and the ops API call ``ensure_startable`` (or ``refusal``) before
anything else touches the database; the command line calls ``prepare_schema`` instead, since its
operators must still be able to fix what the other processes refuse (activate prompts, rotate keys),
and ``python -m core migrate`` always works. The checks are the release checklist's own
(``core.release_items``, ``core.release_secrets``), so a refusal and ``release check`` never disagree.
In local nothing is checked and nothing changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import db, release_items, release_secrets
from core.errors import StartupRefusedError, WorkbenchError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

Unpinned = Literal["allow", "warn", "refuse"]


@dataclass(frozen=True)
class Profile:
    name: str
    development_key: bool
    """Whether trace content may be sealed with the generated development key."""
    migrates: bool
    """Whether a process brings the schema to head itself; otherwise a schema behind head refuses."""
    unpinned: Unpinned
    """What an agent without an explicit active prompt deployment does to a start."""


PROFILES: dict[str, Profile] = {
    "local": Profile("local", development_key=True, migrates=True, unpinned="allow"),
    "staging": Profile("staging", development_key=False, migrates=False, unpinned="warn"),
    "production": Profile("production", development_key=False, migrates=False, unpinned="refuse"),
}


def profile(settings: Settings) -> Profile:
    return PROFILES[settings.environment]


def _database(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _pins(engine: Engine, settings: Settings) -> release_items.PinState:
    with Session(engine) as session:
        return release_items.pin_state(session, settings)


def startup_problems(engine: Engine, settings: Settings) -> list[str]:
    """Everything the environment's profile refuses to start with, each with its fix (empty in local)."""
    rules = profile(settings)
    problems: list[str] = []
    if not rules.development_key:
        try:
            refusal = release_secrets.development_key_problem(settings)
        except WorkbenchError as error:  # a ring that does not parse
            refusal = str(error)
        if refusal:
            problems.append(refusal)
    try:
        schema = None if rules.migrates else release_items.schema_state(engine).problem
        if schema:
            problems.append(schema)
        elif rules.unpinned == "refuse" and (pinned := _pins(engine, settings).message):
            problems.append(pinned)
    except SQLAlchemyError as error:
        problems.append(
            f"the database at {_database(settings)} cannot be checked ({type(error).__name__}): check DATABASE_URL "
            "and that the server is up"
        )
    return problems


def startup_warnings(engine: Engine, settings: Settings) -> list[str]:
    """What the profile lets start but says aloud (staging: unpinned prompts)."""
    if profile(settings).unpinned != "warn":
        return []
    try:
        if release_items.schema_state(engine).problem:
            return []  # refused already
        pinned = _pins(engine, settings).message
    except SQLAlchemyError:
        return []  # startup_problems reports an unreachable database
    return [pinned] if pinned else []


_warned: set[tuple[str, str]] = set()


def ensure_startable(engine: Engine | None = None, settings: Settings | None = None, *, component: str) -> None:
    """Raise ``StartupRefusedError`` listing every problem when ``component`` may not start in this
    environment (the configured engine and settings by default); log the warnings. Touches nothing in local."""
    settings = settings or get_settings()
    if settings.environment == "local":
        return
    engine = engine or db.get_engine(settings.resolved_database_url)
    for warning in startup_warnings(engine, settings):
        if (component, warning) not in _warned:  # the web app checks on every page run: say it once
            _warned.add((component, warning))
            log.warning("%s starts in %s with a warning: %s", component, settings.environment, warning)
    problems = startup_problems(engine, settings)
    if problems:
        listed = "\n".join(f"- {p}." for p in problems)
        raise StartupRefusedError(
            f"The {component} refuses to start in {settings.environment} (WORKBENCH_ENV):\n{listed}\n"
            "`python -m core release check` shows the whole release checklist."
        )


def refusal(component: str) -> str | None:
    """``ensure_startable`` for the configured database, as a message (None: it may start)."""
    try:
        ensure_startable(component=component)
    except StartupRefusedError as error:
        return str(error)
    return None


def prepare_schema(engine: Engine | None = None, settings: Settings | None = None) -> None:
    """What a command does before it works: in local, migrate (idempotent, as always); elsewhere,
    refuse a schema behind head with the command that fixes it (``python -m core migrate``)."""
    settings = settings or get_settings()
    engine = engine or db.get_engine(settings.resolved_database_url)
    if profile(settings).migrates:
        db.migrate(engine)
        return
    problem = release_items.schema_state(engine).problem
    if problem:
        raise StartupRefusedError(
            f"In {settings.environment} (WORKBENCH_ENV) commands do not migrate the database themselves, and {problem}."
        )
