"""The local Writer: asks ``search_corpus`` for the facts that fit the brief and states the best
of them, one sentence each, in the order the sources give them, each citing its fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.agents.contracts import DraftSentence, FactForWriter, WriterInput, WriterOutput
from core.claims import analyse
from core.providers.base import ToolCall, ToolSpec
from core.providers.local import params as read

SEARCH_TOP_K = 12
NEAR_DUPLICATE = 0.8
"""Jaccard overlap of content words above which two facts say the same thing."""

_POINTERS = re.compile(r"\s*\((?:see |cf\. )?(?:fig(?:ure)?s?|tables?|eqs?|equations?|supplementary)[^()]*\)", re.I)


def write(
    request: WriterInput,
    tools: Mapping[str, ToolSpec],
    calls: list[ToolCall],
    params: Mapping[str, Any] | None = None,
) -> WriterOutput:
    """One sentence per chosen fact. ``params`` (from the prompt version): ``max_sentences`` (the
    caller's limit when not declared); ``min_score_share`` (a fact must score at least this share of
    the best-scoring fact in the search; 0 by default: any fact that matches at all);
    ``near_duplicate`` (overlap above which a fact repeats a chosen one); ``search_top_k`` (how many
    facts the search asks for)."""
    given = params or {}
    limit = read.whole(given, "max_sentences", request.max_sentences, agent="writer", low=1, high=50)
    min_share = read.number(given, "min_score_share", 0.0, agent="writer", low=0.0, high=1.0)
    near_duplicate = read.number(given, "near_duplicate", NEAR_DUPLICATE, agent="writer", low=0.0, high=1.0)
    top_k = read.whole(given, "search_top_k", SEARCH_TOP_K, agent="writer", low=1, high=50)
    candidates = list(request.facts)
    search = tools.get("search_corpus")
    if search is not None:
        arguments: dict[str, Any] = {"query": request.brief, "top_k": top_k}
        found = search.fn(**arguments)
        calls.append(ToolCall("search_corpus", arguments, search.record(found)))
        candidates.extend(FactForWriter(id=f["id"], text=f["text"], score=f["score"]) for f in found)

    best = max((f.score for f in candidates if f.score is not None), default=0.0)
    floor = max(best * min_share, 0.0)
    chosen: list[FactForWriter] = []
    seen_ids: set[str] = set()
    for fact in sorted(candidates, key=lambda f: (-(f.score or 0.0) * _standalone(f.text), _number(f.id))):
        if fact.id in seen_ids or (fact.score is not None and (fact.score <= 0 or fact.score < floor)):
            continue
        seen_ids.add(fact.id)
        if any(_overlap(fact.text, other.text) > near_duplicate for other in chosen):
            continue
        chosen.append(fact)
        if len(chosen) == limit:
            break
    chosen.sort(key=lambda f: _number(f.id))  # source order reads better than score order
    return WriterOutput(sentences=[DraftSentence(text=sentence_from(f.text), cites=[f.id]) for f in chosen])


_DEPENDENT_OPENING = re.compile(r"^(?:it|this|these|that|those|they|their|its|such|whether|here)\b", re.I)
DEPENDENT_WEIGHT = 0.3
"""Ranking weight of a fact that leans on the sentence before it ("It also ...", "These results ...")."""


def _standalone(text: str) -> float:
    return DEPENDENT_WEIGHT if _DEPENDENT_OPENING.match(text) else 1.0


def sentence_from(fact_text: str) -> str:
    """A fact as a manuscript sentence: figure and table pointers belong to the source, not to us."""
    text = _POINTERS.sub("", fact_text).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def _overlap(a: str, b: str) -> float:
    sa, sb = analyse(a).content, analyse(b).content
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _number(fact_id: str) -> int:
    return int(fact_id[1:]) if fact_id[1:].isdigit() else 0
