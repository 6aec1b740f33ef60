"""Sentence boundaries in scientific prose, with the character span of each sentence.

Abbreviations ("et al.", "e.g.", "Fig.", "approx."), decimals ("0.05") and initials must not end
a sentence; the spans index the original text so a sentence can serve as a verbatim quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ABBREVIATIONS = frozenset(
    [
        "al",
        "e.g",
        "i.e",
        "cf",
        "fig",
        "figs",
        "eq",
        "eqs",
        "ref",
        "refs",
        "vs",
        "etc",
        "approx",
        "ca",
        "no",
        "nos",
        "vol",
        "p",
        "pp",
        "dr",
        "prof",
        "st",
        "sec",
        "tab",
        "resp",
        "min",
        "max",
        "mr",
        "mrs",
        "ms",
        "jr",
        "sr",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "univ",
        "est",
        "var",
        "sp",
        "spp",
    ]
)
_BOUNDARY = re.compile(r"[.!?](?:[\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")


@dataclass(frozen=True)
class SentenceSpan:
    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[SentenceSpan]:
    spans: list[SentenceSpan] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        cut = match.start() + 1 if text[match.start()] in ".!?" else match.start()
        candidate = text[start:cut]
        last_word = re.search(r"(\S+\s+)?([A-Za-z.]+)\.$", candidate)
        if last_word:
            word = last_word.group(2)
            unit_letter = len(word) == 1 and re.search(r"(?:degrees|\d)\s*$", last_word.group(1) or "")
            if not unit_letter and (word.lower().rstrip(".") in _ABBREVIATIONS or len(word) == 1):
                continue  # "et al." or an initial ("J. Smith"), not the end of a sentence
        _append(spans, text, start, cut)
        start = match.end()
    _append(spans, text, start, len(text))
    return spans


def _append(spans: list[SentenceSpan], text: str, start: int, end: int) -> None:
    # A heading on its own line ("Methods") is not part of the sentence after it.
    while True:
        newline = text.find("\n", start, end)
        if newline < 0:
            break
        line = text[start:newline].strip()
        # Extraction already joined wrapped lines, so a line break left inside a "sentence" ends a
        # title, an author line or a heading, unless the line plainly continues (",", "and").
        if not line or line[-1] in ",;:-" or not text[newline + 1 : end].strip()[:1].isupper():
            break
        _append_one(spans, text, start, newline)
        start = newline + 1
    _append_one(spans, text, start, end)


def _append_one(spans: list[SentenceSpan], text: str, start: int, end: int) -> None:
    raw = text[start:end]
    stripped = raw.strip()
    if not stripped:
        return
    offset = start + raw.index(stripped)
    spans.append(SentenceSpan(stripped, offset, offset + len(stripped)))
