"""The prompt registry: ``prompts/<agent>/<version>.md`` with front matter, pinned by a lock file.

A version is immutable once locked: its sha256 is in ``prompts/prompts.lock.json``, and a
file whose content no longer matches refuses to load. A change is a new version file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import PromptError
from core.settings import PROJECT_ROOT

PROMPTS_DIR = PROJECT_ROOT / "prompts"
LOCK_FILE = PROMPTS_DIR / "prompts.lock.json"
AGENTS = ("librarian", "writer", "verifier", "rewriter")
DEFAULT_VERSION = "v1"
"""Version each agent uses until prompt deployments (issue 7) choose another."""

RESERVED_KEYS = frozenset({"agent", "version", "model_profile", "temperature", "max_tokens"})
"""Front-matter keys the gateway itself reads; every other key is a parameter of the version."""


def _typed(value: Any) -> Any:
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


_FRONT_MATTER = re.compile(r"\A---\n(?P<meta>.*?)\n---\n(?P<body>.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Prompt:
    agent: str
    version: str
    sha256: str
    template: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The front matter beyond the keys the gateway reads itself, typed (int, float, bool or text)."""
        return {k: _typed(v) for k, v in self.meta.items() if k not in RESERVED_KEYS}

    @property
    def temperature(self) -> float:
        return float(self.meta.get("temperature", 0))

    @property
    def max_tokens(self) -> int:
        return int(self.meta.get("max_tokens", 1000))

    def render(self, **values: Any) -> str:
        # Plain substitution of known names: source text full of braces must never break it.
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(values[name]) if name in values else match.group(0)

        return re.sub(r"\{([a-z_]+)\}", replace, self.template)


def _parse(agent: str, version: str, raw: bytes) -> Prompt:
    text = raw.decode("utf-8")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise PromptError(f"prompts/{agent}/{version}.md has no front matter (a block between --- lines).")
    meta: dict[str, Any] = {}
    for line in match.group("meta").splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    return Prompt(agent, version, hashlib.sha256(raw).hexdigest(), match.group("body"), meta)


def read_lock(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    if not lock_file.exists():
        return {}
    return dict(json.loads(lock_file.read_text()))


@lru_cache(maxsize=64)
def load(agent: str, version: str = DEFAULT_VERSION, prompts_dir: Path = PROMPTS_DIR) -> Prompt:
    """The prompt, refusing one whose file differs from the hash it was locked with."""
    if agent not in AGENTS:
        raise PromptError(f"Unknown agent {agent!r}; agents are {', '.join(AGENTS)}.")
    path = prompts_dir / agent / f"{version}.md"
    if not path.exists():
        raise PromptError(f"No prompt file {path.relative_to(prompts_dir.parent)}.")
    raw = path.read_bytes()
    prompt = _parse(agent, version, raw)
    locked = read_lock(prompts_dir / LOCK_FILE.name).get(f"{agent}/{version}")
    if locked is None:
        raise PromptError(
            f"prompts/{agent}/{version}.md is not in prompts.lock.json; run `python -m core prompts lock` to pin it."
        )
    if locked != prompt.sha256:
        raise PromptError(
            f"prompts/{agent}/{version}.md changed after it was locked (sha256 {prompt.sha256[:12]}, "
            f"locked {locked[:12]}). A deployed prompt never changes: restore the file and put your edit "
            f"in a new version file."
        )
    return prompt


def lock_new_versions(prompts_dir: Path = PROMPTS_DIR) -> list[str]:
    """Add every prompt file missing from the lock; never rewrite an existing entry."""
    lock_file = prompts_dir / LOCK_FILE.name
    lock = read_lock(lock_file)
    added = []
    for path in sorted(prompts_dir.glob("*/*.md")):
        key = f"{path.parent.name}/{path.stem}"
        if key not in lock:
            lock[key] = _parse(path.parent.name, path.stem, path.read_bytes()).sha256
            added.append(key)
    lock_file.write_text(json.dumps(dict(sorted(lock.items())), indent=2) + "\n")
    return added
