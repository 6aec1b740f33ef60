"""Progress reporting shared by long-running work (ingestion, fact extraction, drafting)."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]
"""Called with a fraction done in [0, 1] and a short message a person can read."""


def no_progress(_fraction: float, _message: str) -> None:
    """The default when nobody is watching."""


def scaled(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """A progress function for one stage that maps its own [0, 1] into [start, end] of the whole."""

    def report(fraction: float, message: str) -> None:
        progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report
