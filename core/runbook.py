"""The runbook: ``docs/runbook.md`` parsed into procedures, and what sends an SRE to each.

The markdown file is the single source: SREs read it on GitHub, the Runbook page renders it.
Each ``##`` section is one procedure; its anchor is the one GitHub gives the heading, so a link
``docs/runbook.md#<anchor>`` and the page's ``?procedure=<anchor>`` name the same section. The
section's first line ``Triggers: `kind:name`, ...`` says what sends you there:

=========================  =====================================================================
trigger                    meaning
=========================  =====================================================================
``alert:<rule>``           an alert rule of ``core.alerts.RULES`` is firing
``breaker:<kind>``         a circuit breaker is open (``provider``, ``verification``, ``cost``)
``health:<check>``         a health check fails (``database``, ``job-queue``, ``workers``)
``incident:<step>``        a step of the incident procedure (``INCIDENT_STEPS``)
``golive:<criterion>``     a go-live criterion fails (``core.golive``)
``task:<name>``            routine work done on purpose (key rotation, restore, drills)
=========================  =====================================================================

Tests hold the file to the code: every alert rule, breaker kind, incident step and go-live
criterion has a procedure, and every ``python -m core`` command in it parses.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.errors import ConfigurationError
from core.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

RUNBOOK_FILE = PROJECT_ROOT / "docs" / "runbook.md"
"""Where the procedures live (also what the page says to edit)."""

INCIDENT_STEPS = ("freeze", "preserve", "scope", "rollback", "patch", "thaw")
"""The seed's incident procedure, in order: each step is one procedure of the runbook."""

BREAKER_KINDS = ("provider", "verification", "cost")
"""Breaker names as ``core.breakers`` makes them, without the provider after ``provider:``."""

CLI_PREFIX = "python -m core "

_HEADING = re.compile(r"^## +(?P<title>.+?)\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TRIGGERS = re.compile(r"^Triggers:\s*(?P<list>.+)$")
_TRIGGER = re.compile(r"`([a-z]+:[a-z0-9_:-]+)`")
_INLINE_COMMAND = re.compile(r"`(python -m core [^`]+)`")
_ANCHOR_LINK = re.compile(r"\[[^\]]+\]\(#([a-z0-9_-]+)\)")


@dataclass(frozen=True)
class Procedure:
    anchor: str
    """GitHub's anchor of the heading: ``docs/runbook.md#<anchor>``, ``?procedure=<anchor>``."""
    title: str
    triggers: tuple[str, ...]
    body: str
    """The section's markdown after its ``Triggers:`` line."""
    commands: tuple[str, ...]
    """Every ``python -m core ...`` of the section (lines of its code blocks, inline code), as written."""

    def argv(self) -> list[list[str]]:
        """Each command's arguments after ``python -m core`` (comments dropped), for argparse."""
        return [shlex.split(c.split(CLI_PREFIX, 1)[1], comments=True) for c in self.commands]


@dataclass(frozen=True)
class Runbook:
    procedures: tuple[Procedure, ...]

    def get(self, anchor: str) -> Procedure | None:
        return next((p for p in self.procedures if p.anchor == anchor), None)

    def for_trigger(self, trigger: str) -> Procedure | None:
        """The first procedure listing ``trigger`` (``alert:budget``), or None."""
        return next((p for p in self.procedures if trigger in p.triggers), None)

    def for_alert(self, rule: str) -> Procedure | None:
        """The procedure of an alert rule (``core.alerts.RULES`` key), as an event's ``rule`` names it."""
        return self.for_trigger(f"alert:{rule}")

    def for_breaker(self, name: str) -> Procedure | None:
        """The procedure of a breaker by its name (``provider:openai``, ``verification``, ``cost``)."""
        return self.for_trigger(f"breaker:{name.split(':', 1)[0]}")

    def for_incident_step(self, step: str) -> Procedure | None:
        return self.for_trigger(f"incident:{step}")

    def references(self, procedure: Procedure) -> list[Procedure]:
        """The procedures ``procedure`` links to (``[text](#anchor)``), in the order it names them."""
        anchors = dict.fromkeys(_ANCHOR_LINK.findall(procedure.body))
        return [p for p in (self.get(a) for a in anchors) if p is not None and p is not procedure]

    def for_criterion(self, key: str) -> Procedure | None:
        """The procedure to follow when the go-live criterion ``key`` fails."""
        return self.for_trigger(f"golive:{key}")


def without_anchor_links(body: str) -> str:
    """``body`` with each ``[text](#anchor)`` as bold text: on the page a same-document anchor would
    reload the app (and lose the sign-in); the page shows those references as links of its own."""
    return re.sub(r"\[([^\]]+)\]\(#[a-z0-9_-]+\)", r"**\1**", body)


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return kept.replace(" ", "-")


def _section(title: str, lines: list[str], where: str) -> Procedure:
    body_start = next((i for i, line in enumerate(lines) if line.strip()), None)
    found = _TRIGGERS.match(lines[body_start].strip()) if body_start is not None else None
    if body_start is None or found is None:
        raise ConfigurationError(
            f"The procedure {title!r} in {where} has no 'Triggers:' line first; add one such as "
            "Triggers: `alert:cost_per_paragraph`."
        )
    triggers = tuple(_TRIGGER.findall(found["list"]))
    if not triggers:
        raise ConfigurationError(f"The 'Triggers:' line of {title!r} in {where} names no `kind:name` trigger.")
    commands, fenced = [], False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif fenced and CLI_PREFIX in line:
            commands.append(line.strip())
        elif not fenced:
            commands += _INLINE_COMMAND.findall(line)
    body = "\n".join(lines[body_start + 1 :]).strip("\n")
    return Procedure(slug(title), title, triggers, body, tuple(commands))


def parse(text: str, *, where: str = "the runbook") -> Runbook:
    """The procedures of a runbook's markdown, in file order. Raises ``ConfigurationError`` for a
    section without triggers or two sections with one anchor (a link could open only one)."""
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            sections.append((heading["title"], []))
        elif sections:
            sections[-1][1].append(line)
    procedures = tuple(_section(title, lines, where) for title, lines in sections)
    seen: set[str] = set()
    for p in procedures:
        if p.anchor in seen:
            raise ConfigurationError(f"Two procedures in {where} have the anchor {p.anchor!r}; rename one heading.")
        seen.add(p.anchor)
    return Runbook(procedures)


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> Runbook:
    return parse(path.read_text(encoding="utf-8"), where=str(path))


def load(path: Path = RUNBOOK_FILE) -> Runbook:
    """The runbook as the file is now (parsed once per change of the file). Raises
    ``ConfigurationError`` when the file is missing or malformed."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as error:
        raise ConfigurationError(
            f"The runbook {path} cannot be read ({error.strerror}); it ships with the workbench, so redeploy it."
        ) from error
    return _load(path, mtime)


def procedure_for_alert(rule: str, path: Path = RUNBOOK_FILE) -> Procedure | None:
    """The procedure of an alert rule, or None (also when the runbook cannot be read: a page that
    lists alerts must still show them; the Runbook page says what is wrong with the file)."""
    try:
        return load(path).for_alert(rule)
    except ConfigurationError:
        log.warning("no runbook link for alert %s: the runbook cannot be read", rule, exc_info=True)
        return None
