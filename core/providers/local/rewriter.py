"""The local Rewriter: replaces a failed sentence with what its best-matching fact states."""

from __future__ import annotations

from core.agents.contracts import RewriterInput, RewriterOutput
from core.claims import analyse
from core.errors import ProviderError
from core.providers.local.writer import sentence_from


def rewrite(request: RewriterInput) -> RewriterOutput:
    if not request.facts:
        raise ProviderError("The Rewriter needs at least one fact to rewrite from.")
    wanted = analyse(request.sentence).content
    cited = set(request.cites)

    def closeness(fact_index: int) -> tuple[int, int, int]:
        fact = request.facts[fact_index]
        # Prefer a fact the sentence already cites, then the one sharing most content words.
        return (fact.id in cited, len(wanted & analyse(fact.text).content), -fact_index)

    best = request.facts[max(range(len(request.facts)), key=closeness)]
    return RewriterOutput(text=sentence_from(best.text), cites=[best.id])
