"""The local Librarian: every statement-bearing sentence of the chunk becomes a fact whose
quote is that sentence, character for character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.agents.contracts import ExtractedFact, FactKind, LibrarianInput, LibrarianOutput
from core.claims import direction_of, hedge_level, tokenize
from core.providers.local import params as read
from core.sentences import split_sentences

MIN_WORDS = 6
MAX_WORDS = 90
TITLE_CASE_LIMIT = 0.5
"""Above this share of capitalised words a line is a title or an author list, not a statement."""
_FRONT_MATTER = re.compile(r"^\s*(?:key\s*words?|abstract|correspondence|received|accepted|copyright)\b", re.I)
_LEAD_INS = re.compile(
    r"^(?:however|moreover|furthermore|in addition|additionally|notably|importantly|interestingly|overall|"
    r"in contrast|by contrast|similarly|finally|first|second|third|in summary|in conclusion|consequently),\s+"
    r"|^(?:we (?:found|observed|show|showed|report|demonstrate|demonstrated) that|"
    r"our results (?:show|showed|demonstrate|indicate) that)\s+",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"^\s*(?:\[\d+\]|\d+\.\s+[A-Z][a-z]+,|references\b|bibliography\b|doi:)", re.IGNORECASE)
_METHOD = re.compile(
    r"\b(?:we (?:used|measured|collected|sampled|recruited|randomi[sz]ed|applied|conducted|performed|analy[sz]ed|"
    r"trained|fitted|estimated|compared)|were (?:randomly|assigned|measured|collected|sampled|recruited|grown|"
    r"incubated|treated)|was (?:measured|performed|used|calculated|estimated))\b",
    re.IGNORECASE,
)
_DEFINITION = re.compile(r"\b(?:is defined as|are defined as|refers to|we define|denotes)\b", re.IGNORECASE)
_LIMITATION = re.compile(r"\b(?:limitation|limited by|caution|should be interpreted|not generali[sz]e)", re.IGNORECASE)


def extract(request: LibrarianInput, params: Mapping[str, Any] | None = None) -> LibrarianOutput:
    """The chunk's statements as facts. ``params`` (from the prompt version): ``min_quote_words``
    and ``max_quote_words`` bound a fact's length in words; ``max_facts_per_chunk`` (0: no limit)
    keeps only the first facts of each chunk."""
    given = params or {}
    min_words = read.whole(given, "min_quote_words", MIN_WORDS, agent="librarian", low=1, high=MAX_WORDS)
    max_words = read.whole(given, "max_quote_words", MAX_WORDS, agent="librarian", low=min_words, high=1000)
    limit = read.whole(given, "max_facts_per_chunk", 0, agent="librarian", low=0, high=10_000)
    facts: list[ExtractedFact] = []
    for span in split_sentences(request.chunk_text):
        if limit and len(facts) >= limit:
            break
        if _REFERENCE.match(span.text):
            if span.text.lower().startswith(("references", "bibliography")):
                break  # the rest of the chunk is the reference list
            continue
        words = span.text.split()
        if not (min_words <= len(words) <= max_words) or span.text.endswith("?") or span.text[-1] not in ".)%":
            continue
        if _FRONT_MATTER.match(span.text) or _title_case_ratio(words) > TITLE_CASE_LIMIT:
            continue  # keywords, headings, author and affiliation lines state no finding
        facts.append(
            ExtractedFact(text=fact_text(span.text), quote=span.text, page=request.page, kind=classify(span.text))
        )
    return LibrarianOutput(facts=facts)


def _title_case_ratio(words: list[str]) -> float:
    alphabetic = [w for w in words if w[:1].isalpha() and len(w) > 3]
    return sum(w[0].isupper() for w in alphabetic) / len(alphabetic) if alphabetic else 0.0


def fact_text(quote: str) -> str:
    """The quote stated on its own: one line, without a lead-in that only links it to its neighbours."""
    text = " ".join(quote.split())
    stripped = _LEAD_INS.sub("", text)
    return stripped[:1].upper() + stripped[1:] if stripped else text


def classify(sentence: str) -> FactKind:
    if _LIMITATION.search(sentence):
        return "limitation"
    if _DEFINITION.search(sentence):
        return "definition"
    if _METHOD.search(sentence):
        return "method"
    tokens = tokenize(sentence)
    directional = any(direction_of(t.lower) for t in tokens) or any(hedge_level(t.lower) > 1 for t in tokens)
    if directional:
        return "result"
    if any(t.kind == "number" for t in tokens):
        return "quantity"
    return "background"
