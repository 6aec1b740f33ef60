"""Typed JSON contracts of the four agents (DESIGN.md, "Core contracts").

Every provider's output is validated against these models; anything else is a
``ContractError``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FactKind = Literal["result", "method", "definition", "background", "limitation", "quantity"]
FAILURE_MODES = (
    "no_citation",
    "unknown_citation",
    "irrelevant_citation",
    "number_mismatch",
    "unit_mismatch",
    "negation",
    "direction",
    "hedge_dropped",
    "scope_widened",
    "entity_mismatch",
    "role_swap",
    "causal_overclaim",
    "unsupported_content",
    "empty_sentence",
)
"""Named reasons a sentence is unsupported, in the order the guard checks them."""

FailureMode = Literal[
    "no_citation",
    "unknown_citation",
    "irrelevant_citation",
    "number_mismatch",
    "unit_mismatch",
    "negation",
    "direction",
    "hedge_dropped",
    "scope_widened",
    "entity_mismatch",
    "role_swap",
    "causal_overclaim",
    "unsupported_content",
    "empty_sentence",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Librarian -----------------------------------------------------------------------------------


class LibrarianInput(_Strict):
    chunk_text: str
    page: int = Field(ge=1, description="page the chunk starts on")
    document_title: str = ""


class ExtractedFact(_Strict):
    text: str = Field(min_length=1, description="the fact, stated on its own")
    quote: str = Field(min_length=1, description="a verbatim span of the chunk that supports it")
    page: int = Field(ge=1)
    kind: FactKind


class LibrarianOutput(_Strict):
    facts: list[ExtractedFact]


# Writer --------------------------------------------------------------------------------------


class FactForWriter(_Strict):
    id: str = Field(pattern=r"^F\d+$")
    text: str
    score: float | None = None


class WriterInput(_Strict):
    brief: str
    facts: list[FactForWriter] = Field(description="facts found so far by search_corpus")
    max_sentences: int = 5
    corpus: str = Field(default="", description="fingerprint of the manuscript's facts the tool searches")


class DraftSentence(_Strict):
    text: str = Field(min_length=1)
    cites: list[str]

    @field_validator("cites")
    @classmethod
    def _fact_ids(cls, cites: list[str]) -> list[str]:
        return [c.strip() for c in cites if c.strip()]


class WriterOutput(_Strict):
    sentences: list[DraftSentence]


# Verifier ------------------------------------------------------------------------------------


class CitedFact(_Strict):
    id: str
    text: str


class VerifierInput(_Strict):
    sentence: str
    facts: list[CitedFact] = Field(description="only the facts the sentence cites that exist")
    cited: list[str] = Field(description="every id the sentence cites, known or not")


class VerifierOutput(_Strict):
    verdict: Literal["supported", "unsupported"]
    failure_mode: FailureMode | None = None
    reason: str = ""


# Rewriter ------------------------------------------------------------------------------------


class RewriterInput(_Strict):
    sentence: str
    cites: list[str]
    facts: list[CitedFact]
    failure_mode: str | None = None
    reason: str = ""


class RewriterOutput(_Strict):
    text: str = Field(min_length=1)
    cites: list[str]
