"""How hard a piece of work looks, as a score from 0 to 100 that the router turns into a tier.

Deterministic and pure (no I/O, no model): the same brief and facts always give the same score,
so a routing decision can be explained and replayed. The score is a sum of named components;
each measures one signal, saturates at a stated point, and contributes ``weight * share`` where
``share`` is how far the signal got towards saturation (0 to 1). The weights of a kind of work
add up to 100, and the breakdown always adds up to the score.

A paragraph (the Writer, then the Verifier and Rewriter of the same run) is judged by its brief
and the facts it draws on: how long the brief is, how many facts and distinct source documents
are involved, how many numbers and units must be kept straight, how much comparison, cause and
contrast the brief asks for, and how much hedging and negation there is to preserve. A Librarian
chunk is judged by its length, its density of numbers and its density of reasoning cues.

What it cannot judge (the Routing page says so too):

- Non-English text: the cue words are English, so a brief in another language scores low on
  reasoning and hedging whatever it asks for. ``caveats`` flags text that looks non-English.
- Math-heavy text: formulas, symbols and derivations count as a few numbers at most.
  ``caveats`` flags text dense in math symbols.
- Domain difficulty: a short brief about a subtle topic looks simple; the score sees form, not
  meaning. Force a stronger model for an agent with an override when that matters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.claims import HEDGE_MODERATE, HEDGE_WEAK, NEGATIONS

TIERS = ("simple", "medium", "complex")
"""Tiers from cheapest to strongest model."""

DEFAULT_SIMPLE_BELOW = 30.0
"""A score under this is simple (0-100)."""
DEFAULT_COMPLEX_FROM = 60.0
"""A score at or above this is complex (0-100); in between is medium."""

CANNOT_JUDGE = (
    "Non-English text: the cue words it counts are English, so a brief in another language looks simpler than it is.",
    "Math-heavy text: formulas and symbols count as a few numbers at most, not as the reasoning they carry.",
    "Domain difficulty: it reads the form of a brief, not its meaning; a short brief on a subtle topic looks "
    "simple. Use an override to force a stronger model where that matters.",
)
"""What the heuristic cannot judge, in plain words (shown on the Routing page)."""


@dataclass(frozen=True)
class Component:
    """One signal: what was measured, where it saturates, and what it added to the score."""

    name: str
    label: str
    value: float
    """The raw measure (a count, a density)."""
    saturates_at: float
    weight: float
    contribution: float


@dataclass(frozen=True)
class Complexity:
    score: float
    components: tuple[Component, ...]
    kind: str
    """``paragraph`` or ``chunk``: what was judged."""
    caveats: tuple[str, ...] = field(default=())
    """Why this particular score may be off (the text looks non-English or math-heavy)."""

    @property
    def breakdown(self) -> dict[str, float]:
        """Contribution by component name; the values add up to ``score``."""
        return {c.name: c.contribution for c in self.components}


@dataclass(frozen=True)
class SourceFact:
    """What the score reads of a fact: its text and which document it comes from."""

    text: str
    document: int | str


def tier_of(
    score: float, *, simple_below: float = DEFAULT_SIMPLE_BELOW, complex_from: float = DEFAULT_COMPLEX_FROM
) -> str:
    if score < simple_below:
        return "simple"
    if score >= complex_from:
        return "complex"
    return "medium"


# -- the signals --------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
_NUMBER_RE = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)*")
_UNIT_RE = re.compile(
    r"(?<![\w.])\d+(?:[.,]\d+)*\s?(?:%|‰|°\s?[CF]|(?:[kmµμnc]?(?:g|l|L|m|mol|M)|t|ha|ppm|ppb|yr|h|d|s|min|K|Pa|kPa"
    r"|MPa|J|kJ|W|kW|V|Hz|dS)(?:\s?(?:/|per\s)\s?(?:[kmµμnc]?(?:g|l|L|m)|ha|yr|h|d|s|m2|m²|plant|year|day))?)(?![\w])"
)
_MATH_CHARS = frozenset("=+^∑∫√∂∆∇≤≥≠≈±×÷∞∈∀∃λμσπθαβγδεωΩ{}\\|")

_REASONING_CUES = (
    # comparison
    "compare", "compared", "comparing", "comparison", "versus", "vs", "than", "relative to", "difference",
    "differences", "differ", "differs", "higher", "lower", "greater", "smaller", "more", "less", "contrast",
    "contrasting", "between", "whereas", "while", "however", "although", "unlike", "but",
    # cause and effect
    "because", "cause", "causes", "caused", "due to", "effect", "effects", "leads to", "led to", "explain",
    "explains", "why", "how", "mechanism", "mechanisms", "therefore", "thus", "driven by", "depends",
    "dependent", "interaction", "trade-off", "tradeoff", "reconcile", "synthesise", "synthesize",
)  # fmt: skip
_MULTIWORD_CUES = tuple(c for c in _REASONING_CUES if " " in c)
_SINGLE_CUES = frozenset(c for c in _REASONING_CUES if " " not in c)
_HEDGES = HEDGE_WEAK | HEDGE_MODERATE | {"hedged", "uncertain", "uncertainty", "unclear", "limited", "limitation"}
_ENGLISH_FUNCTION_WORDS = frozenset(
    "the of and a to in is that for on with as by are was be this from at or which it not an have were".split()
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]


def _share(value: float, saturates_at: float) -> float:
    return max(0.0, min(value / saturates_at, 1.0)) if saturates_at > 0 else 0.0


def _component(name: str, label: str, value: float, saturates_at: float, weight: float) -> Component:
    # Contributions are rounded first and the score is their sum, so the breakdown a page shows adds up.
    return Component(name, label, round(value, 3), saturates_at, weight, round(weight * _share(value, saturates_at), 1))


def _numbers(text: str) -> tuple[int, int]:
    """Numbers and numbers with a unit (a percentage counts as a unit)."""
    return len(_NUMBER_RE.findall(text)), len(_UNIT_RE.findall(text))


def _reasoning_cues(words: list[str], text: str) -> int:
    lowered = text.lower()
    return sum(1 for w in words if w in _SINGLE_CUES) + sum(lowered.count(c) for c in _MULTIWORD_CUES)


def _hedges_and_negations(words: list[str], text: str) -> int:
    return sum(1 for w in words if w in _HEDGES or w in NEGATIONS) + text.lower().count("n't")


def _caveats(text: str, words: list[str]) -> tuple[str, ...]:
    found = []
    if len(words) >= 8 and sum(1 for w in words if w in _ENGLISH_FUNCTION_WORDS) / len(words) < 0.08:
        found.append(
            "The text does not look like English: its cue words were not counted, so the score is likely too low."
        )
    visible = [ch for ch in text if not ch.isspace()]
    if visible and sum(1 for ch in visible if ch in _MATH_CHARS) / len(visible) > 0.03:
        found.append("The text is dense in math symbols: formulas are not judged, so the score is likely too low.")
    return tuple(found)


def _total(components: Sequence[Component]) -> float:
    return round(sum(c.contribution for c in components), 1)


# -- what is judged -----------------------------------------------------------------------------


def paragraph_complexity(brief: str, facts: Sequence[SourceFact] = ()) -> Complexity:
    """A paragraph brief and the facts it draws on (the Writer's, Verifier's and Rewriter's score)."""
    brief_words = _words(brief)
    material = " ".join([brief, *(f.text for f in facts)])
    material_words = _words(material)
    numbers, units = _numbers(material)
    # Distinct cues: a brief that says "compare" three times asks for one comparison.
    cue_kinds = len({w for w in brief_words if w in _SINGLE_CUES}) + sum(
        1 for c in _MULTIWORD_CUES if c in brief.lower()
    )
    documents = len({f.document for f in facts})
    components = (
        _component("brief_length", "Brief length (words)", len(brief_words), 60, 15),
        _component("facts", "Facts involved, beyond the first", max(len(facts) - 1, 0), 11, 10),
        _component("sources", "Distinct source documents, beyond the first", max(documents - 1, 0), 3, 20),
        _component("numbers", "Numbers and units to keep straight", numbers + units, 12, 15),
        _component("reasoning", "Comparison, cause and contrast asked for (distinct cues)", cue_kinds, 3, 25),
        _component(
            "hedging", "Hedges and negations to preserve", _hedges_and_negations(material_words, material), 4, 15
        ),
    )
    return Complexity(_total(components), components, "paragraph", _caveats(material, material_words))


def chunk_complexity(text: str) -> Complexity:
    """A chunk of a source document, as the Librarian reads it."""
    words = _words(text)
    per_100 = 100.0 / max(len(words), 1)
    numbers, units = _numbers(text)
    components = (
        _component("chunk_length", "Chunk length (words)", len(words), 800, 40),
        _component("number_density", "Numbers and units per 100 words", (numbers + units) * per_100, 8, 40),
        _component(
            "reasoning_density",
            "Comparison, cause, contrast, hedge and negation cues per 100 words",
            (_reasoning_cues(words, text) + _hedges_and_negations(words, text)) * per_100,
            6,
            20,
        ),
    )
    return Complexity(_total(components), components, "chunk", _caveats(text, words))
