"""The models an agent's golden run may be pinned to, for the Prompts page's model comparison.

A model is offered when the registry holds it for the configured provider and it may still be
called (active, or deprecated with a warning; retired and unregistered are never offered, as
``golden run --model`` refuses them). A model of another provider is not offered either: the
gateway sends every call to the configured provider whatever the pin says, so a run pinned to it
would be answered by that provider and recorded, and priced, under the other model's name.

The offline provider's ids name their agent (``local-{agent}-N``, see
``core.providers.local``), so for it only this agent's ids are offered. It answers the same
whatever the model id; what changes its answers is the prompt version's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core import model_registry
from core.golden_results import RunSummary
from core.prompt_diff import PromptVersion
from core.providers import Provider

LOCAL = "local"


@dataclass(frozen=True)
class ModelChoice:
    """A model a golden run of the agent may be pinned to."""

    model: str
    status: str
    """``active`` or ``deprecated`` (retired models are never choices)."""
    removal_date: date | None
    default: bool
    """The provider's default model for the agent: what it gets when nothing is pinned and routing names none."""

    @property
    def label(self) -> str:
        """How the picker names it: ``local-writer-1 · provider default``, ``gpt-4o · deprecated, removed on …``."""
        notes = ["provider default"] if self.default else []
        if self.status == model_registry.DEPRECATED:
            notes.append(f"deprecated, removed on {self.removal_date}" if self.removal_date else "deprecated")
        return " · ".join([self.model, *notes])

    @property
    def warning(self) -> str:
        """What to say when a deprecated model is picked ("" for an active one)."""
        if self.status != model_registry.DEPRECATED:
            return ""
        when = f"on {self.removal_date.isoformat()}" if self.removal_date else "on a date not set yet"
        return (
            f"{self.model} is deprecated and will be retired {when}: a golden run still works, "
            "but routing should move off it (Models page)."
        )


def _for_agent(model: str, agent: str, provider: str) -> bool:
    # A vendor model serves any agent; the offline provider's ids are one per agent by name.
    return provider != LOCAL or model.startswith(f"{LOCAL}-{agent}-")


def model_choices(
    db: Connection | Session, *, agent: str, provider: Provider, profile: str = "default"
) -> list[ModelChoice]:
    """The models ``agent`` may be pinned to under ``provider``: the provider's default first, then by id.

    ``profile`` is the model profile the agent's prompt asks for (its ``model_profile``), which
    decides the provider's default model."""
    registry = model_registry.snapshot(db)
    default = provider.default_model(agent, profile)
    choices = []
    for model, entry in registry.entries.items():
        status = registry.status(model)
        if entry.spec.provider != provider.name or not registry.usable(model):
            continue
        if not _for_agent(model, agent, provider.name):
            continue
        removal = entry.removal_date if status == model_registry.DEPRECATED else None
        choices.append(ModelChoice(model, status, removal, model == default))
    return sorted(choices, key=lambda c: (not c.default, c.model))


def latest_by_model(
    runs: Iterable[RunSummary], *, agent: str, version: str, sha256: str, models: Sequence[str]
) -> dict[str, RunSummary | None]:
    """For each of ``models``, the newest of ``runs`` (given newest first) in which every call of
    ``agent`` went to that model under the prompt file ``version`` with ``sha256``, or None.

    The prompt file is held fixed so that the two sides differ by their model only; a run made
    without a model pin counts when its calls all went to the model (the run records what it used).
    """
    found: dict[str, RunSummary | None] = dict.fromkeys(models)
    for run in runs:
        model = run.models.get(agent)
        if model not in found or found[model] is not None:
            continue
        if run.prompt_versions.get(agent) == version and run.prompt_hashes.get(agent) == sha256:
            found[model] = run
    return found


def run_label(agent: str, version: str, model: str) -> str:
    """The label a model-pinned golden run is stored with: ``writer v1 on local-writer-1``."""
    return f"{agent} {version} on {model}"


def notes(
    agent: str,
    active: PromptVersion | None,
    provider: str,
    choices: Sequence[ModelChoice],
    escape: Callable[[object], str],
) -> list[str]:
    """What the page says above a model comparison: what both sides hold fixed, what the offline
    provider's models can and cannot show, and why there is nothing to pick when there is one model."""
    if active is None:
        return [f"The active version of {escape(agent)} does not load, so no model can be run with it."]
    lines = [
        f"Both sides run {escape(agent)} {escape(active.version)} (the active version) on {escape(provider)}, the "
        "configured provider; its registered models the agent may use are offered (deprecated ones with a warning, "
        "retired ones not)."
    ]
    if provider == LOCAL:
        lines.append(
            "The offline provider answers the same whatever the model id, so two of its models show the same "
            "outcomes: what changes them offline is a prompt version's parameters (compare two versions)."
        )
    if len(choices) < 2:
        only = ", ".join(c.model for c in choices) or "none"
        lines.append(
            f"{escape(provider)} has one model {escape(agent)} may use ({escape(only)}), so there is nothing to "
            "compare it with; an admin registers another one for this provider on the Models page. Models of "
            f"other providers are not offered: their calls would go to {escape(provider)} all the same."
        )
    return lines
