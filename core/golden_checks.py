"""Judging one golden case: what the run produced against what the case expects.

Pure functions over plain data (no database), so each rule is easy to read and to test:

- ``verified``: the drafted paragraph's outcome is the one expected.
- ``cited`` / ``not_cited``: a fact whose quote holds the given text is (is not) cited.
- ``absent``: a phrase does not appear in the paragraph.
- ``sentence``: a sentence given to the Verifier gets the expected verdict (and failure mode).

A *false support* is a sentence shown as supported that the case says is not: a sentence check
expected unsupported that came out supported, or a drafted sentence shown as supported that holds a
forbidden phrase or cites a fact the case says no sentence may cite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.golden_set import GoldenCase, SentenceCheck


@dataclass(frozen=True)
class KnownFact:
    ref: str
    quote: str


@dataclass(frozen=True)
class Judged:
    """A sentence and its verdict, as the run produced it."""

    text: str
    cites: list[str]
    verdict: str
    failure_mode: str | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "cites": self.cites,
            "verdict": self.verdict,
            "failure_mode": self.failure_mode,
            "reason": self.reason,
        }


@dataclass
class Outcome:
    expectations: list[dict[str, Any]] = field(default_factory=list)
    false_supports: int = 0

    def add(self, kind: str, target: str, passed: bool, detail: str, **extra: Any) -> None:
        self.expectations.append({"kind": kind, "target": target, "passed": passed, "detail": detail, **extra})

    @property
    def passed(self) -> bool:
        return self.false_supports == 0 and all(e["passed"] for e in self.expectations)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.expectations if not e["passed"]]


def quoting(facts: Sequence[KnownFact], text: str) -> list[str]:
    """Refs of the facts whose quote holds ``text`` (case and spacing ignored)."""
    wanted = " ".join(text.split()).casefold()
    return [f.ref for f in facts if wanted in " ".join(f.quote.split()).casefold()]


def judge_paragraph(
    case: GoldenCase, outcome: Outcome, *, facts: Sequence[KnownFact], verified: bool, sentences: Sequence[Judged]
) -> None:
    expect = case.paragraph
    cited = {c for s in sentences for c in s.cites}
    text = " ".join(s.text for s in sentences).casefold()
    outcome.add(
        "verified",
        "paragraph",
        verified == expect.verified,
        f"expected {'verified' if expect.verified else 'not verified'}, got "
        f"{'verified' if verified else 'not verified'}",
    )
    for quote in expect.must_cite:
        refs = quoting(facts, quote)
        if not refs:
            outcome.add("cited", quote, False, "no fact quotes it: the Librarian did not extract it")
        else:
            hit = sorted(cited & set(refs))
            outcome.add("cited", quote, bool(hit), f"cited as {', '.join(hit)}" if hit else f"{refs[0]} not cited")
    forbidden_refs: set[str] = set()
    for quote in expect.must_not_cite:
        refs = quoting(facts, quote)
        forbidden_refs |= set(refs)
        hit = sorted(cited & set(refs))
        outcome.add("not_cited", quote, not hit, f"cited as {', '.join(hit)}" if hit else "not cited")
    for phrase in expect.must_not_contain:
        present = phrase.casefold() in text
        outcome.add("absent", phrase, not present, "appears in the paragraph" if present else "absent")
    for s in sentences:
        if s.verdict != "supported":
            continue
        lowered = s.text.casefold()
        if any(p.casefold() in lowered for p in expect.must_not_contain) or forbidden_refs & set(s.cites):
            outcome.false_supports += 1


def judge_sentence(
    case_sentence: SentenceCheck, outcome: Outcome, *, refs: list[str], missing: list[str], got: Judged | None
) -> None:
    """One sentence check; ``missing`` are cite quotes no fact holds, ``got`` the verdict (None if not run)."""
    expected = case_sentence.verdict + (f" ({case_sentence.failure_mode})" if case_sentence.failure_mode else "")
    if got is None:
        detail = "no fact quotes " + "; ".join(repr(m) for m in missing) + ": the Librarian did not extract it"
        outcome.add("sentence", case_sentence.text, False, detail, cites=refs, expected=expected)
        return
    verdict_ok = got.verdict == case_sentence.verdict
    mode_ok = case_sentence.failure_mode is None or got.failure_mode == case_sentence.failure_mode
    shown = got.verdict + (f" ({got.failure_mode})" if got.failure_mode else "")
    false_support = got.verdict == "supported" and case_sentence.verdict == "unsupported"
    if false_support:
        outcome.false_supports += 1
    outcome.add(
        "sentence",
        case_sentence.text,
        verdict_ok and mode_ok,
        ("FALSE SUPPORT: " if false_support else "") + f"expected {expected}, got {shown}",
        cites=refs,
        expected=expected,
        verdict=got.verdict,
        failure_mode=got.failure_mode,
        reason=got.reason,
        false_support=false_support,
    )
