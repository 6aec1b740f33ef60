"""Prompt versions side by side: each agent's locked versions with their front matter, and the
unified diff between two of them.

Reads the lock file and the version files through ``core.prompts`` (so a file that changed after
it was locked shows up as such, never as a silent diff); no database, no Streamlit.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import PromptError
from core.prompts import AGENTS, LOCK_FILE, load, read_lock
from core.settings import get_settings

SHOWN_KEYS = ("model_profile", "temperature", "max_tokens")
"""Front-matter keys the gateway reads that still matter to a reader (``agent`` and ``version``
only repeat the file name)."""


@dataclass(frozen=True)
class PromptVersion:
    """One locked version of an agent's prompt, as the lock file and its front matter describe it."""

    agent: str
    version: str
    sha256: str
    """The sha256 the lock file pins (what a golden run and a deployment name)."""
    params: dict[str, Any] = field(default_factory=dict)
    """model_profile, temperature, max_tokens, then every parameter the version declares."""
    error: str = ""
    """Why the version cannot be loaded (file missing or changed after locking); empty when it loads."""


def _folder(prompts_dir: Path | None) -> Path:
    """The folder asked for, or the configured one (``WORKBENCH_PROMPTS_DIR``, as the gateway reads it)."""
    return prompts_dir or get_settings().prompts_dir


def _natural(version: str) -> tuple[Any, ...]:
    """``v2`` before ``v10``: digits compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version))


def versions(agent: str, *, prompts_dir: Path | None = None) -> list[str]:
    """The versions of ``agent`` pinned in the lock file, oldest first (``v1``, ``v2``, …, ``v10``)."""
    if agent not in AGENTS:
        raise PromptError(f"Unknown agent {agent!r}; agents are {', '.join(AGENTS)}.")
    lock = read_lock(_folder(prompts_dir) / LOCK_FILE.name)
    found = [key.split("/", 1)[1] for key in lock if key.split("/", 1)[0] == agent]
    return sorted(found, key=_natural)


def describe(agent: str, *, prompts_dir: Path | None = None) -> list[PromptVersion]:
    """Every locked version of ``agent`` with its parameters; a broken one carries its error."""
    folder = _folder(prompts_dir)
    lock = read_lock(folder / LOCK_FILE.name)
    described = []
    for version in versions(agent, prompts_dir=folder):
        sha = lock[f"{agent}/{version}"]
        try:
            prompt = load(agent, version, folder)
        except PromptError as error:
            described.append(PromptVersion(agent, version, sha, error=str(error)))
            continue
        shown = {key: prompt.meta[key] for key in SHOWN_KEYS if key in prompt.meta}
        described.append(PromptVersion(agent, version, sha, {**shown, **prompt.params}))
    return described


def parameter_rows(described: list[PromptVersion]) -> list[dict[str, Any]]:
    """One row per parameter, one column per version (``–`` where a version does not declare it):
    a table where two versions' differences stand side by side."""
    keys: dict[str, None] = {}
    for item in described:
        keys.update(dict.fromkeys(item.params))
    return [{"Parameter": key, **{item.version: str(item.params.get(key, "–")) for item in described}} for key in keys]


def file_text(agent: str, version: str, *, prompts_dir: Path | None = None) -> str:
    """The whole version file (front matter and template), after checking it against its lock entry."""
    folder = _folder(prompts_dir)
    load(agent, version, folder)  # raises PromptError when missing, unlocked or changed
    return (folder / agent / f"{version}.md").read_text(encoding="utf-8")


def unified_diff(agent: str, old: str, new: str, *, prompts_dir: Path | None = None, context: int = 3) -> str:
    """The unified diff from ``old`` to ``new`` of ``agent``'s prompt (empty when they are the same)."""
    before = file_text(agent, old, prompts_dir=prompts_dir).splitlines(keepends=True)
    after = file_text(agent, new, prompts_dir=prompts_dir).splitlines(keepends=True)
    lines = difflib.unified_diff(before, after, f"{agent}/{old}.md", f"{agent}/{new}.md", n=context)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
