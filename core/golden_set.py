"""The golden set: one TOML file per case under ``golden/``, validated with pydantic on load.

A case holds the text of a small source paper (the runner renders it as a PDF with
``core.pdfgen``, byte for byte the same on every run), a paragraph brief, and what the run must
show: facts the drafted paragraph must cite (each named by a substring of its quote), facts and
phrases it must not contain, whether it comes out verified, and sentences known to be supported
or not (their citations named by quote substrings), each with the verdict and failure mode the
Verifier must give. ``golden/README.md`` describes the format.

``load_set`` reads every case; a file that does not parse or validate is a ``GoldenSetError``
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.agents.contracts import FailureMode
from core.errors import GoldenSetError
from core.pdfgen import Paper, render_paper
from core.settings import PROJECT_ROOT

GOLDEN_DIR = PROJECT_ROOT / "golden"
CASE_GLOB = "*.toml"
_NOTE = "Golden set, synthetic"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _latin1(value: str) -> str:
    value.encode("latin-1")  # a UnicodeEncodeError is a ValueError: pydantic names the field
    return value


class Section(_Strict):
    heading: str = Field(min_length=1)
    paragraphs: list[str] = Field(min_length=1)

    @field_validator("heading")
    @classmethod
    def _heading_latin1(cls, value: str) -> str:
        return _latin1(value)

    @field_validator("paragraphs")
    @classmethod
    def _paragraphs_latin1(cls, value: list[str]) -> list[str]:
        return [_latin1(v) for v in value]


class Source(_Strict):
    """The paper the case's facts come from; its text must be Latin-1 (the PDF core fonts)."""

    title: str = Field(min_length=1)
    authors: str = "Golden Set Authors"
    abstract: str = ""
    sections: list[Section] = Field(min_length=1)

    @field_validator("title", "authors", "abstract")
    @classmethod
    def _text_latin1(cls, value: str) -> str:
        return _latin1(value)


class ParagraphExpectations(_Strict):
    verified: bool
    """The expected verification outcome of the drafted paragraph."""
    must_cite: list[str] = Field(default_factory=list)
    """Quote substrings: a fact whose quote contains each must be cited by some sentence."""
    must_not_cite: list[str] = Field(default_factory=list)
    """Quote substrings of facts no sentence may cite (off-topic or out-of-scope facts)."""
    must_not_contain: list[str] = Field(default_factory=list)
    """Phrases (case-insensitive) the paragraph must not contain; a supported sentence holding one is
    a false support."""


class SentenceCheck(_Strict):
    """A sentence given to the Verifier as it stands, citing the facts whose quotes hold ``cites``."""

    text: str = Field(min_length=1)
    cites: list[str] = Field(min_length=1)
    verdict: Literal["supported", "unsupported"]
    failure_mode: FailureMode | None = None
    """Checked when given (only with ``unsupported``)."""
    note: str = ""


class GoldenCase(_Strict):
    id: str
    title: str = Field(min_length=1)
    brief: str = Field(min_length=1)
    stresses: list[str] = Field(default_factory=list)
    """What the case is there to catch (scope, numbers, units, negation, hedges, entities...)."""
    source: Source
    paragraph: ParagraphExpectations
    sentences: list[SentenceCheck] = Field(default_factory=list)

    @property
    def filename(self) -> str:
        return f"{self.id}.pdf"

    @property
    def expectation_count(self) -> int:
        p = self.paragraph
        return 1 + len(p.must_cite) + len(p.must_not_cite) + len(p.must_not_contain) + len(self.sentences)

    def paper(self) -> Paper:
        return Paper(
            title=self.source.title,
            authors=self.source.authors,
            affiliation="OpusBlocks golden set",
            note=_NOTE,
            abstract=self.source.abstract,
            keywords="Keywords: golden set; " + ", ".join(self.stresses or ["verification"]),
            sections=tuple((s.heading, tuple(s.paragraphs)) for s in self.source.sections),
        )

    def pdf(self) -> bytes:
        """The source paper as PDF bytes: the same bytes on every run."""
        return render_paper(self.paper())


@dataclass(frozen=True)
class GoldenSet:
    cases: tuple[GoldenCase, ...]
    sha256: str
    """Hash over the case files' names and bytes: which cases a run ran."""
    directory: Path


def _where(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "top level"
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return f"field {field}: {first['msg']}{more}"


def load_case(path: Path) -> GoldenCase:
    """One case file, validated; the case id is the file's name without ``.toml``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise GoldenSetError(f"Golden case {path.name} is not valid TOML: {error}.") from error
    if "id" in data:
        raise GoldenSetError(f"Golden case {path.name}: remove the field id; the file name is the case id.")
    try:
        return GoldenCase.model_validate({**data, "id": path.stem})
    except ValidationError as error:
        raise GoldenSetError(f"Golden case {path.name} does not validate: {_where(error)}.") from error


def load_set(directory: Path = GOLDEN_DIR) -> GoldenSet:
    """Every case under ``directory``, in file-name order, with the set's hash."""
    paths = sorted(directory.glob(CASE_GLOB))
    if not paths:
        raise GoldenSetError(f"No golden cases ({CASE_GLOB}) in {directory}.")
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return GoldenSet(tuple(load_case(p) for p in paths), digest.hexdigest(), directory)
