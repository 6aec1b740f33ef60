"""The Verifier's deterministic guard.

It runs beside whatever verdict a model gives and can only lower it: a sentence the
guard finds fault with is unsupported, whatever the model said. It checks what a
language model is known to wave through: citations that are missing or unknown,
numbers, units and comparators, negation, direction words, dropped hedges and
certainty boosters, universal quantifiers, and names that the cited facts never mention.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from core.agents.contracts import FailureMode
from core.claims import (
    ASSOCIATIONS,
    BOOSTERS,
    NEGATIONS,
    UNIVERSALS,
    Claim,
    Clause,
    Quantity,
    Token,
    analyse,
    direction_of,
    fronted_stems,
    hedge_level,
    is_content,
)


@dataclass(frozen=True)
class GuardFinding:
    failure_mode: FailureMode
    reason: str


@dataclass(frozen=True)
class FactText:
    id: str
    text: str


def check(sentence: str, cited: Sequence[str], facts: Sequence[FactText]) -> GuardFinding | None:
    """The first fault found in ``sentence`` against the cited ``facts``, or None.

    ``facts`` may hold more facts than are cited; only the cited ones count as evidence.
    """
    if not sentence.strip():
        return GuardFinding("empty_sentence", "The sentence is empty.")
    if not cited:
        return GuardFinding("no_citation", "The sentence cites no fact; every sentence must cite what supports it.")
    known = {f.id: f for f in facts}
    unknown = [c for c in cited if c not in known]
    if unknown:
        return GuardFinding(
            "unknown_citation", f"It cites {', '.join(unknown)}, which is not a fact of this manuscript."
        )
    evidence = [analyse(known[c].text) for c in dict.fromkeys(cited)]
    claim = analyse(sentence)
    for probe in (_numbers, _entities, _negation, _direction, _hedges, _association, _universals, _bindings):
        finding = probe(claim, evidence)
        if finding is not None:
            return finding
    return None


# -- the probes, in the order a reader would want to hear about them ----------------------------


def _numbers(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    stated = [q for fact in evidence for q in fact.quantities]
    for q in claim.quantities:
        same_value = [s for s in stated if _same_value(s, q)]
        if not same_value:
            said = ", ".join(sorted({s.describe() for s in stated})) or "no number"
            return GuardFinding("number_mismatch", f"It says {q.describe()}, but the cited facts give {said}.")
        same_unit = [s for s in same_value if s.unit == q.unit]
        if not same_unit:
            units = ", ".join(sorted({s.describe() for s in same_value}))
            return GuardFinding("unit_mismatch", f"It says {q.describe()}, but the cited facts give {units}.")
        same_comparator = [s for s in same_unit if s.comparator == q.comparator]
        if not same_comparator:
            return GuardFinding(
                "number_mismatch", f"It says {q.describe()}, but the cited facts say {same_unit[0].describe()}."
            )
        if all(s.approximate for s in same_comparator) and not q.approximate:
            return GuardFinding(
                "hedge_dropped",
                f"The cited facts give {same_comparator[0].describe()} as an approximation; "
                f"the sentence states {q.describe()} as exact.",
            )
    return None


def _same_value(a: Quantity, b: Quantity) -> bool:
    return abs(a.value - b.value) <= 1e-9 * max(1.0, abs(a.value), abs(b.value))


def _entities(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    surfaces = {t.lower for fact in evidence for t in fact.tokens}
    stems = {t.stem for fact in evidence for t in fact.tokens}
    for token in claim.tokens:
        if token.lower in claim.entities and token.lower not in surfaces and token.stem not in stems:
            return GuardFinding("entity_mismatch", f"'{token.surface}' does not appear in the cited facts.")
    return None


def _negation_heads(clause: Clause) -> list[str]:
    """The content stem each negation cue governs ("did not *change*", "no *effect*")."""
    heads: list[str] = []
    tokens = clause.tokens
    for i, t in enumerate(tokens):
        if t.kind == "word" and _negation_cue(tokens, i):
            for nxt in tokens[i + 1 : i + 6]:
                if nxt.lower in {",", ";", "."}:
                    break
                if is_content(nxt) or direction_of(nxt.lower):
                    heads.append(nxt.stem)
                    break
    return heads


def _negation_cue(tokens: list[Token], i: int) -> bool:
    t = tokens[i]
    if t.lower == "not" and i + 1 < len(tokens) and tokens[i + 1].lower == "only":
        return False
    return t.lower in NEGATIONS or t.lower.endswith("n't")


def _negation(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    sentence_heads = {h for clause in claim.clauses for h in _negation_heads(clause)}
    fact_heads = {h for fact in evidence for clause in fact.clauses for h in _negation_heads(clause)}
    negated_in_facts = any(clause.negated for fact in evidence for clause in fact.clauses)
    # A negation the facts do not have.
    if claim.negated and not negated_in_facts:
        return GuardFinding("negation", "The sentence negates a claim that the cited facts state positively.")
    for head in sentence_heads:
        if head not in fact_heads and head not in _all_negated_scope(evidence):
            return GuardFinding("negation", f"The sentence negates '{head}', which the cited facts do not negate.")
    # A negation the sentence drops: it restates a negated claim without the negation.
    for fact in evidence:
        for clause in fact.clauses:
            for head in _negation_heads(clause):
                if head in claim.content and head not in sentence_heads:
                    return GuardFinding(
                        "negation", f"The cited fact negates '{head}', but the sentence states it positively."
                    )
    return None


def _all_negated_scope(evidence: list[Claim]) -> set[str]:
    scope: set[str] = set()
    for fact in evidence:
        for clause in fact.clauses:
            if clause.negated:
                scope |= clause.content
    return scope


def _direction(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    # Counted, not just looked up: "Increasing X decreased Y" must not license "Increasing X increased Y".
    available = Counter(d for fact in evidence for t in fact.tokens if (d := direction_of(t.lower)))
    for token in claim.tokens:
        direction = direction_of(token.lower)
        if direction is None:
            continue
        if available[direction] > 0:
            available[direction] -= 1
            flipped = _bound_direction(claim, token, evidence)
            if flipped:
                return GuardFinding(
                    "direction",
                    f"It says '{token.surface}' of '{flipped}', but the cited facts say the opposite of it.",
                )
            continue
        axis, sign = direction
        if available[(axis, -sign)] > 0:
            return GuardFinding(
                "direction", f"It says '{token.surface}', but the cited facts state the opposite direction."
            )
        return GuardFinding("direction", f"It says '{token.surface}', a direction the cited facts do not state.")
    return None


def _object_of(claim: Claim, index: int) -> str | None:
    """The first content word after a direction word: what goes up or down."""
    for t in claim.tokens[index + 1 : index + 5]:
        if t.lower in {",", ";", "."}:
            return None
        if is_content(t) and direction_of(t.lower) is None and not t.stem.startswith("unit:"):
            return t.stem
    return None


def _bound_direction(claim: Claim, token: Token, evidence: list[Claim]) -> str | None:
    """The object of ``token`` when every direction word the facts attach to it says the opposite."""
    direction = direction_of(token.lower)
    target = _object_of(claim, token.index)
    if direction is None or target is None:
        return None
    axis, sign = direction
    signs = set()
    for fact in evidence:
        for t in fact.tokens:
            d = direction_of(t.lower)
            if d is not None and d[0] == axis and _object_of(fact, t.index) == target:
                signs.add(d[1])
    return target if signs and sign not in signs else None


def _restated(clause: Clause, claim: Claim) -> bool:
    core = clause.content - clause.qualifier_stems or clause.content
    if not core:
        return False
    shared = core & claim.content
    return len(shared) >= min(2, len(core)) and len(shared) / len(core) >= 0.5


def _hedges(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    fact_words = {t.lower for fact in evidence for t in fact.tokens}
    for token in claim.tokens:
        if token.lower in BOOSTERS and token.lower not in fact_words:
            hedged = any(clause.hedge for fact in evidence for clause in fact.clauses)
            mode: FailureMode = "hedge_dropped" if hedged else "unsupported_content"
            return GuardFinding(mode, f"'{token.surface}' claims more certainty than the cited facts.")
    for fact in evidence:
        for clause in fact.clauses:
            if clause.hedge and _restated(clause, claim) and _closest_clause(clause, claim).hedge < clause.hedge:
                cue = next(t.surface for t in clause.tokens if _hedge_cue(t, clause))
                return GuardFinding(
                    "hedge_dropped", f"The cited fact is hedged ('{cue}'); the sentence states it as certain."
                )
    return None


def _closest_clause(clause: Clause, claim: Claim) -> Clause:
    """The clause of the sentence that restates ``clause`` of a fact (most content words shared)."""
    return max(claim.clauses, key=lambda c: len(c.content & clause.content))


def _association(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    sentence_words = {t.lower for t in claim.tokens}
    if sentence_words & ASSOCIATIONS:
        return None
    for fact in evidence:
        for clause in fact.clauses:
            cue = next((t.surface for t in clause.tokens if t.lower in ASSOCIATIONS), None)
            if cue and _restated(clause, claim):
                return GuardFinding(
                    "causal_overclaim",
                    f"The cited fact reports an association ('{cue}'); the sentence states it as cause and effect.",
                )
    return None


def _hedge_cue(token: Token, clause: Clause) -> bool:
    return hedge_level(token.lower) == clause.hedge or (clause.hedge == 1 and hedge_level(token.lower) == 1)


def _universals(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    fact_words = {t.lower for fact in evidence for t in fact.tokens}
    for token in claim.tokens:
        if token.lower in UNIVERSALS and token.lower not in fact_words:
            return GuardFinding("scope_widened", f"'{token.surface}' generalises beyond what the cited facts state.")
    return None


def _bindings(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    """Values and names kept but attached to the wrong thing ("0.91 for A and 0.78 for B" swapped)."""
    for fact in evidence:
        swapped = _number_binding(claim, fact) or _number_subject(claim, fact) or _entity_order(claim, fact)
        if swapped:
            return GuardFinding("role_swap", swapped)
    return None


def _after_number(claim: Claim, index: int) -> str | None:
    for t in claim.tokens[index + 1 : index + 5]:
        if t.kind == "number" or t.lower in {",", ";", ".", "(", ")"}:
            return None
        if is_content(t) and not t.stem.startswith("unit:"):
            return t.stem
    return None


def _number_binding(claim: Claim, fact: Claim) -> str | None:
    """Two values that trade the things they are given for: fact "0.91 for A, 0.78 for B", sentence the reverse."""
    bound: dict[str, set[float]] = {}
    for q in fact.quantities:
        stem = _after_number(fact, q.index)
        if stem:
            bound.setdefault(stem, set()).add(q.value)
    said = {q.value: _after_number(claim, q.index) for q in claim.quantities}
    for value, stem in said.items():
        if not stem or stem not in bound or value in bound[stem]:
            continue
        for other in bound[stem]:
            other_stem = said.get(other)
            if other_stem and value in bound.get(other_stem, set()):
                return f"It swaps what {value:g} and {other:g} are given for, compared with the cited fact."
    return None


def _before_number(claim: Claim, index: int) -> str | None:
    """The nearest content word before a number ("nitrate by 20%"), unless another number stands between."""
    for t in reversed(claim.tokens[max(0, index - 4) : index]):
        if t.kind == "number" or t.lower in {",", ";", "(", ")"}:
            return None
        if is_content(t) and not t.stem.startswith("unit:") and direction_of(t.lower) is None:
            return t.stem
    return None


def _number_subject(claim: Claim, fact: Claim) -> str | None:
    """A value moved onto another thing the fact quantifies: fact "nitrate by 20% and phosphate by
    10%", sentence "nitrate by 10%"."""
    values_of: dict[str, set[float]] = {}
    subjects_of: dict[float, set[str | None]] = {}
    for q in fact.quantities:
        subject = _before_number(fact, q.index)
        subjects_of.setdefault(q.value, set()).add(subject)
        if subject:
            values_of.setdefault(subject, set()).add(q.value)
    for q in claim.quantities:
        subject = _before_number(claim, q.index)
        known = subjects_of.get(q.value, set())
        if subject and subject in values_of and q.value not in values_of[subject] and known and None not in known:
            return f"It gives {q.describe()} for '{subject}', but the cited fact gives that value for something else."
    return None


def _is_passive(claim: Claim) -> bool:
    words = [t.lower for t in claim.tokens]
    return any(
        w == "by" and i >= 2 and (words[i - 2] in _AUX or (i >= 3 and words[i - 3] in _AUX))
        for i, w in enumerate(words)
    )


_AUX = frozenset({"is", "are", "was", "were", "be", "been", "being"})


def _entity_order(claim: Claim, fact: Claim) -> str | None:
    if _is_passive(claim) or _is_passive(fact):
        return None  # voice changes the order of who acts and who is acted on
    movable = fronted_stems(claim) | fronted_stems(fact)

    def positions(c: Claim) -> dict[str, tuple[int, int]]:
        """Entity -> (phrase number, position): phrases are cut at commas, clause breaks and brackets."""
        seen: dict[str, list[tuple[int, int]]] = {}
        phrase = depth = 0
        for t in c.tokens:
            if t.lower in {",", ";", ":", "whereas", "while", "but", "although"}:
                phrase += 1
            depth += (t.lower in {"(", "["}) - (t.lower in {")", "]"})
            if depth == 0 and t.lower in c.entities and t.stem not in movable:
                seen.setdefault(t.stem, []).append((phrase, t.index))
        return {stem: places[0] for stem, places in seen.items() if len(places) == 1}

    in_sentence, in_fact = positions(claim), positions(fact)
    shared = sorted(in_sentence.keys() & in_fact.keys(), key=lambda k: in_sentence[k][1])
    for i, a in enumerate(shared):
        for b in shared[i + 1 :]:
            same_phrase = in_sentence[a][0] == in_sentence[b][0] and in_fact[a][0] == in_fact[b][0]
            if same_phrase and in_fact[a][1] > in_fact[b][1]:
                return f"'{a}' and '{b}' trade places compared with the cited fact."
    return None
