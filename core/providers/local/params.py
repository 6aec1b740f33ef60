"""The parameters a prompt version declares (``Prompt.params``), read by the local agents.

Each reader takes the agent's name for its error, a default (returned as it is when the version
does not declare the key: the behaviour of a version declaring nothing), and the range a declared
value must fall in; a value of the wrong type or
out of range is a ``PromptError`` naming the agent, the key and what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import PromptError


def _bad(agent: str, key: str, value: Any, wanted: str) -> PromptError:
    return PromptError(
        f"The {agent} prompt declares {key}: {value!r}, but the local {agent} needs {wanted}; "
        f"fix it in a new prompt version."
    )


def number(params: Mapping[str, Any], key: str, default: float, *, agent: str, low: float, high: float) -> float:
    if key not in params:
        return default
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(agent, key, value, f"a number from {low:g} to {high:g}")
    return float(value)


def whole(params: Mapping[str, Any], key: str, default: int, *, agent: str, low: int, high: int) -> int:
    if key not in params:
        return default
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(agent, key, value, f"a whole number from {low} to {high}")
    return value


def choice(params: Mapping[str, Any], key: str, default: str, *, agent: str, options: tuple[str, ...]) -> str:
    if key not in params:
        return default
    value = params[key]
    if value not in options:
        raise _bad(agent, key, value, "one of " + ", ".join(options))
    return str(value)
