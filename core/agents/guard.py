"""The Verifier's deterministic guard.

It runs beside whatever verdict a model gives and can only lower it: a sentence the
guard finds fault with is unsupported, whatever the model said. It checks what a
language model is known to wave through: citations that are missing or unknown,
numbers, units and comparators, negation, direction words, dropped hedges and
certainty boosters, universal quantifiers, and names that the cited facts never mention.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from core.agents.contracts import FailureMode
from core.claims import (
    ASSOCIATIONS,
    BOOSTERS,
    STRONG_NEGATIONS,
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
    negation_cue,
    quoted_indices,
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


def _negation_scopes(clause: Clause) -> list[set[str]]:
    """What each negation cue governs: the next two content words ("did not *change sleep*", "no *longer
    significant*", "rather than *disease*")."""
    scopes: list[set[str]] = []
    tokens = [t for t in clause.tokens if t.index not in quoted_indices(clause.tokens)]
    for i in range(len(tokens)):
        if tokens[i].kind != "word" or not negation_cue(tokens, i):
            continue
        scope: set[str] = set()
        for nxt in tokens[i + 1 : i + 8]:
            if nxt.lower in {",", ";", ".", "(", ")"} or len(scope) == 2:
                break
            if is_content(nxt) or direction_of(nxt.lower):
                scope.add(nxt.stem)
        if scope:
            scopes.append(scope)
    return scopes


def _negation_count(clause: Clause) -> int:
    tokens = [t for t in clause.tokens if t.index not in quoted_indices(clause.tokens)]
    return sum(1 for i in range(len(tokens)) if tokens[i].kind == "word" and negation_cue(tokens, i))


def _negation(claim: Claim, evidence: list[Claim]) -> GuardFinding | None:
    fact_words = {t.lower for fact in evidence for t in fact.tokens}
    for token in claim.tokens:
        if token.lower in STRONG_NEGATIONS and token.lower not in fact_words:
            return GuardFinding("negation", f"'{token.surface}' is stronger than any negation in the cited facts.")
    negated_in_facts = [clause for fact in evidence for clause in fact.clauses if clause.negated]
    for clause in claim.clauses:
        if not clause.negated:
            continue
        # A negation the facts do not have: the negated words must be negated in a cited fact too.
        negated_there = set().union(*(c.content for c in negated_in_facts)) if negated_in_facts else set()
        for scope in _negation_scopes(clause):
            if not negated_in_facts or not (scope & negated_there):
                return GuardFinding("negation", "The sentence negates a claim that the cited facts state positively.")
    # A negation the sentence adds to a clause it restates ("proceeded without" -> "did not proceed without").
    fact_clauses = [clause for fact in evidence for clause in fact.clauses]
    for clause in claim.clauses:
        if not clause.negated or not fact_clauses:
            continue
        source = max(fact_clauses, key=lambda c: len(c.content & clause.content))
        if _negation_count(clause) > _negation_count(source):
            return GuardFinding("negation", "The sentence adds a negation that the cited fact does not have.")
    # A negation the sentence drops: it restates a negated clause without as many negations over the
    # words it keeps ("did not proceed without a catalyst" -> "proceeded without a catalyst").
    for fact_clause in negated_in_facts:
        if not _restated(fact_clause, claim):
            continue
        closest = _closest_clause(fact_clause, claim)
        kept = [scope & closest.content for scope in _negation_scopes(fact_clause)]
        kept = [k for k in kept if k]
        if len(kept) > len(_negation_scopes(closest)):
            word = sorted(kept[0])[0]
            return GuardFinding("negation", f"The cited fact negates '{word}', but the sentence states it positively.")
    return None


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


_OBJECT_STOPS = frozenset({",", ";", ".", "(", ")", "and", "or", "but", "whereas", "while", "than"})


def _object_of(claim: Claim, index: int) -> set[str]:
    """Up to three content words after a direction word: what goes up or down."""
    found: set[str] = set()
    for t in claim.tokens[index + 1 : index + 8]:
        if t.lower in _OBJECT_STOPS or len(found) == 3:
            break
        if is_content(t) and direction_of(t.lower) is None and not t.stem.startswith("unit:"):
            found.add(t.stem)
    return found


def _bound_direction(claim: Claim, token: Token, evidence: list[Claim]) -> str | None:
    """The object of ``token`` when the direction the facts attach to that object is the opposite."""
    direction = direction_of(token.lower)
    target = _object_of(claim, token.index)
    if direction is None or not target:
        return None
    axis, sign = direction
    best_overlap, signs = 0, set()
    for fact in evidence:
        for t in fact.tokens:
            d = direction_of(t.lower)
            if d is None or d[0] != axis:
                continue
            overlap = len(_object_of(fact, t.index) & target)
            if overlap > best_overlap:
                best_overlap, signs = overlap, {d[1]}
            elif overlap == best_overlap and overlap:
                signs.add(d[1])
    return ", ".join(sorted(target)) if signs and sign not in signs else None


def _restated(clause: Clause, claim: Claim) -> bool:
    core = clause.core
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
    """Values and names kept but attached to the wrong thing ("20% in A and 10% in B" -> "10% in A")."""
    swapped = _number_context(claim, evidence) or _number_order(claim, evidence)
    if swapped:
        return GuardFinding("role_swap", swapped)
    for fact in evidence:
        swapped = _entity_order(claim, fact)
        if swapped:
            return GuardFinding("role_swap", swapped)
    return None


_CONTEXT_STOPS = frozenset({",", ";", "(", ")", "and", "or", "but", "whereas", "while", "than"})


def _context(claim: Claim, q: Quantity) -> set[str]:
    """What a number is about: the content words after it up to the next separator or number; for a
    number in brackets ("the tropics (0.75 °C per decade)"), the words before the bracket."""
    tokens = claim.tokens
    # Only a value opening its bracket annotates what stands before it; "(adjusted HR 1.12" does not.
    before = [t for t in tokens[max(0, q.index - 2) : q.index] if t.lower not in {"<", ">", "=", "~", "≤", "≥"}]
    opening = before[-1].index if before and before[-1].lower == "(" else None
    if opening is not None:
        span = reversed(tokens[max(0, opening - 4) : opening])
    else:
        span = iter(tokens[q.index + 1 : q.index + 8])
    words: set[str] = set()
    previous: Token | None = tokens[q.index]
    for t in span:
        if t.lower in _CONTEXT_STOPS or t.kind == "number":
            break
        attached_unit = t.stem.startswith("unit:") and previous is not None and previous.kind == "number"
        if is_content(t) and not attached_unit and direction_of(t.lower) is None:
            words.add(t.stem)
        previous = t
    return words


def _number_context(claim: Claim, evidence: list[Claim]) -> str | None:
    facts = []
    for fact in evidence:
        about: dict[float, set[str]] = {}
        for q in fact.quantities:
            about.setdefault(q.value, set()).update(_context(fact, q))
        facts.append(about)
    for q in claim.quantities:
        said = _context(claim, q)
        homes = [about for about in facts if about.get(q.value)]
        if not homes:
            continue  # no cited fact says what this value is about
        # The fact whose words around this value best match the sentence's is where it comes from.
        best = max(len(about[q.value] & said) for about in homes)
        for about in (h for h in homes if len(h[q.value] & said) == best):
            for word in sorted(said):
                owners = {value for value, words in about.items() if word in words}
                if owners and q.value not in owners:
                    return (
                        f"It gives {q.describe()} for '{word}', but the cited fact gives that value for something else."
                    )
    return None


def _transitions(claim: Claim) -> set[tuple[float, float]]:
    """Value pairs joined by "to" ("from 7.2% to 5.1%"): their order is the direction of a change."""
    pairs = set()
    quantities = claim.quantities
    for first, second in itertools.pairwise(quantities):
        between = [t.lower for t in claim.tokens[first.index + 1 : second.index]]
        if "to" in between and len(between) <= 4 and not {",", ";", "and"} & set(between):
            pairs.add((first.value, second.value))
    return pairs


def _number_order(claim: Claim, evidence: list[Claim]) -> str | None:
    stated = set().union(*(_transitions(fact) for fact in evidence)) if evidence else set()
    for first, second in _transitions(claim):
        if (second, first) in stated and (first, second) not in stated:
            return f"It goes from {first:g} to {second:g}; the cited facts go from {second:g} to {first:g}."
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
