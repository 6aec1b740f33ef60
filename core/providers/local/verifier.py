"""The local Verifier: an offline, deterministic reading of whether the cited facts state
what the sentence says.

Each part of the sentence must be stated by one cited fact (not pieced together from
several), the restrictions of a restated fact (population, condition, setting,
"some") must be kept, the roles around a relation ("A outperformed B") must not be
swapped, and every cited fact must bear on the sentence.

Parameters a prompt version may declare (``prompts/README.md``): ``strictness`` ``strict`` (the
default) or ``lenient``, which skips the checks a weaker model is known to miss (dropped
restrictions and elided words, facts about another named thing, swapped roles); and
``support_threshold`` (default 1.0), the share of each part of the sentence one cited fact must
state. The deterministic guard (``core.agents.guard``) runs beside any verdict either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.agents.contracts import VerifierInput, VerifierOutput
from core.claims import (
    GENERIC_HEADS,
    Claim,
    Clause,
    Token,
    abbreviations,
    analyse,
    content_positions,
    content_stems,
    entity_stems,
    fronted_stems,
    is_content,
    number_stems,
    tokenize,
)
from core.providers.local import params as read

STRICT, LENIENT = "strict", "lenient"

_SEGMENT_BREAKS = frozenset({";", "and", "whereas", "while", "but", "although", "though"})


def verify(request: VerifierInput, params: Mapping[str, Any] | None = None) -> VerifierOutput:
    given = params or {}
    strict = read.choice(given, "strictness", STRICT, agent="verifier", options=(STRICT, LENIENT)) == STRICT
    threshold = read.number(given, "support_threshold", 1.0, agent="verifier", low=0.0, high=1.0)
    facts = {f.id: analyse(f.text) for f in request.facts}
    cited = [c for c in dict.fromkeys(request.cited) if c in facts]
    if not cited:
        return VerifierOutput(verdict="unsupported", failure_mode="no_citation", reason="No cited fact to check.")
    claim = analyse(request.sentence)
    evidence = {c: facts[c] for c in cited}
    aliases: dict[str, set[str]] = {}
    for fact in evidence.values():
        aliases.update(abbreviations(fact))
    have = _with_aliases(claim.content, aliases)

    sentence_numbers = number_stems(claim.quantities)
    sentence_entities = entity_stems(claim)
    for stems, _numbers, _link in _segments(request.sentence):
        stems = _with_aliases(stems, aliases)
        if not stems:
            continue
        best_id, clause, missing = _best_cover(stems, evidence, aliases)
        if missing and len(stems - missing) < threshold * len(stems):
            listing = ", ".join(sorted(m.lstrip("#") for m in missing)[:5])
            return VerifierOutput(
                verdict="unsupported",
                failure_mode="unsupported_content",
                reason=f"No single cited fact states this part of the sentence (not in {best_id}: {listing}).",
            )
        assert clause is not None
        if not strict:
            continue
        elided = _elided(clause, stems, have | sentence_numbers, aliases, entity_stems(evidence[best_id]))
        if elided:
            return VerifierOutput(
                verdict="unsupported",
                failure_mode="scope_widened",
                reason=f"The sentence leaves out '{elided}', which {best_id} states within the same claim.",
            )
        foreign = _foreign_entities(evidence[best_id], sentence_entities, stems)
        if foreign:
            return VerifierOutput(
                verdict="unsupported",
                failure_mode="entity_mismatch",
                reason=f"{best_id} is about {foreign}, which the sentence never names; it cannot state this part.",
            )

    for fact_id, fact in evidence.items() if strict else ():
        for clause in fact.clauses:
            finding = _scope(clause, claim, have)
            if finding:
                return VerifierOutput(
                    verdict="unsupported", failure_mode="scope_widened", reason=f"{fact_id} {finding}"
                )
        if _roles_swapped(claim, fact):
            return VerifierOutput(
                verdict="unsupported",
                failure_mode="role_swap",
                reason=f"The sentence reverses who does what to whom compared with {fact_id}.",
            )

    for fact_id, fact in evidence.items():
        if not (have & fact.content) and not (number_stems(claim.quantities) & number_stems(fact.quantities)):
            return VerifierOutput(
                verdict="unsupported",
                failure_mode="irrelevant_citation",
                reason=f"{fact_id} has nothing to do with this sentence; cite the fact that states it.",
            )
    return VerifierOutput(verdict="supported", failure_mode=None, reason=f"Stated by {', '.join(cited)}.")


_RELATIVES = frozenset({"which", "who", "that", "whose"})


def _segments(sentence: str) -> list[tuple[set[str], set[str], set[str]]]:
    """Content stems, numbers and required link of each coordinated part of the sentence.

    A relative clause after a comma (", which were warmed ...") may come from another cited
    fact, but that fact must name what the clause is about (the link: the last content word
    before the comma), so a clause cannot be hung on the wrong thing.
    """
    parts: list[list[Token]] = [[]]
    links: list[set[str]] = [set()]
    clause_starts = {c.tokens[0].index for c in analyse(sentence).clauses[1:]}
    tokens = tokenize(sentence)
    current = 0
    main = 0  # the part a relative clause returns to when it closes
    for i, token in enumerate(tokens):
        if token.lower in _SEGMENT_BREAKS or token.index in clause_starts:
            parts.append([])
            links.append(set())
            current = main = len(parts) - 1
        elif token.lower in _RELATIVES and i > 0 and tokens[i - 1].lower == ",":
            antecedent = next((t.stem for t in reversed(parts[current]) if is_content(t)), None)
            parts.append([])
            links.append({antecedent} if antecedent else set())
            main, current = current, len(parts) - 1
        elif token.lower == "," and current != main:
            current = main
        else:
            parts[current].append(token)
    out = []
    for part, link in zip(parts, links, strict=True):
        stems = content_stems(part)
        numbers = {f"#{t.value:g}" for t in part if t.kind == "number" and t.value is not None}
        out.append((stems | numbers | link, numbers, link))
    return out


def _best_cover(
    stems: set[str], evidence: dict[str, Claim], aliases: dict[str, set[str]]
) -> tuple[str, Clause | None, set[str]]:
    """The fact clause that states most of ``stems``; what it lacks (empty when it states them all)."""
    best: tuple[str, Clause | None, set[str]] = ("", None, stems)
    for fact_id, fact in evidence.items():
        for index, clause in enumerate(fact.clauses):
            available = _with_aliases(clause.content | clause.qualifier_stems, aliases)
            available |= number_stems(clause.quantities)
            if clause.shares_subject and index > 0:
                # "X increased A and decreased B": the subject of "decreased" is X. Which verb goes
                # with which object is the guard's direction check.
                previous = fact.clauses[index - 1]
                available |= previous.content | previous.qualifier_stems | number_stems(previous.quantities)
            missing = stems - available
            if best[1] is None or len(missing) < len(best[2]):
                best = (fact_id, clause, missing)
    return best


def _elided(
    clause: Clause, stems: set[str], sentence: set[str], aliases: dict[str, set[str]], entities: set[str]
) -> str | None:
    """A word the fact states between words the sentence keeps ("per capita CO2 emissions" ->
    "CO2 emissions", "slightly soluble" -> "soluble"): leaving it out changes the claim."""
    sequence: list[str] = []
    adjacent: list[bool] = []  # whether the word directly precedes the next one (no comma, no function word)
    span_of: list[int] = []  # which part between commas, "and" and "or" the word stands in
    span = 0
    depth = 0
    previous: Token | None = None
    counted = {clause.tokens[i].index for i in content_positions(clause.tokens)}
    for t in clause.tokens:
        depth += (t.lower in {"(", "["}) - (t.lower in {")", "]"})
        if depth > 0 or t.lower in {")", "]"}:
            previous = None
            continue  # a bracketed aside ("(HR 0.92)", "(Lee et al., 2021)") may go
        if t.lower in {",", ";", "and", "or"}:
            span += 1
        word = None
        if t.kind == "number" and t.value is not None:
            word = f"#{t.value:g}"
        elif t.index in counted:
            word = t.stem
        if word is not None:
            if adjacent:
                adjacent[-1] = previous is not None and previous.stem == sequence[-1]
            sequence.append(word)
            adjacent.append(False)
            span_of.append(span)
        previous = t
    wanted = {s for s in stems if s in sequence}
    window = _smallest_window(sequence, wanted)
    if window is None:
        return None
    kept = _with_aliases(sentence, aliases)
    start = window[0]
    # A modifier right before the first kept word belongs to it ("per capita CO2 emissions").
    if start > 0 and adjacent[start - 1] and sequence[start - 1] not in kept:
        start -= 1
    for position in range(start, window[1] + 1):
        word = sequence[position]
        if word in kept or word.startswith("#"):
            continue
        # Only a word inside a stretch the sentence keeps on both sides is left out of the claim;
        # a whole coordinated part ("radius ... and an orbital period") may go.
        same_span = [i for i in range(start, window[1] + 1) if span_of[i] == span_of[position]]
        kept_before = any(sequence[i] in kept for i in same_span if i < position)
        kept_after = any(sequence[i] in kept for i in same_span if i > position)
        if not (kept_after and (kept_before or position == start)):
            continue
        if word in GENERIC_HEADS and _next_to_kept_name(position, sequence, entities, kept):
            continue  # "the PTEN gene" -> "PTEN": the name carries the meaning
        return word
    return None


def _next_to_kept_name(position: int, sequence: list[str], entities: set[str], kept: set[str]) -> bool:
    neighbours = sequence[max(0, position - 1) : position] + sequence[position + 1 : position + 2]
    return any(n in entities and n in kept for n in neighbours)


def _smallest_window(sequence: list[str], wanted: set[str]) -> tuple[int, int] | None:
    if not wanted:
        return None
    counts: dict[str, int] = {}
    have = 0
    best: tuple[int, int] | None = None
    left = 0
    for right, word in enumerate(sequence):
        if word in wanted:
            counts[word] = counts.get(word, 0) + 1
            if counts[word] == 1:
                have += 1
        while have == len(wanted):
            if best is None or right - left < best[1] - best[0]:
                best = (left, right)
            gone = sequence[left]
            if gone in wanted:
                counts[gone] -= 1
                if counts[gone] == 0:
                    have -= 1
            left += 1
    return best


def _foreign_entities(fact: Claim, sentence_entities: set[str], segment: set[str]) -> str | None:
    """A fact about another named thing ("Drug B", "sample S2") lending a part to a sentence about a
    different one ("Drug A"): the part is then said of the wrong thing."""
    theirs = entity_stems(fact) - sentence_entities - segment
    ours = sentence_entities - entity_stems(fact)
    if theirs and ours:
        return "'" + "', '".join(sorted(theirs)) + "'"
    return None


def _with_aliases(stems: set[str], aliases: dict[str, set[str]]) -> set[str]:
    """Stems with defined abbreviations read both ways: "PFS" stands for "progression-free survival"."""
    out = set(stems)
    for abbr, long_form in aliases.items():
        if abbr in stems:
            out |= long_form
        elif long_form <= stems:
            out.add(abbr)
    return out


def _scope(clause: Clause, claim: Claim, content: set[str]) -> str | None:
    core = clause.core
    shared = core & content
    if not core or len(shared) < min(2, len(core)) or len(shared) / len(core) < 0.6:
        return None  # the sentence does not restate this clause
    have = content | number_stems(claim.quantities)
    named = entity_stems(claim)
    for qualifier in clause.qualifiers:
        dropped = qualifier - have
        # "on MMLU" keeps "on the MMLU benchmark": a kept name carries the restriction.
        if dropped and not (qualifier & named and dropped <= GENERIC_HEADS):
            return (
                "limits the claim (" + ", ".join(sorted(d.lstrip("#") for d in dropped)) + "); the sentence drops it."
            )
    sentence_words = {t.lower for t in claim.tokens}
    for word in clause.restrictive:
        if word not in sentence_words:
            return f"says '{word}'; the sentence drops that restriction."
    return None


_SYMMETRIC = frozenset({"correl", "associ", "interact", "link", "differ", "compar", "similar", "match", "equal"})
_PASSIVE_AUX = frozenset({"is", "are", "was", "were", "be", "been", "being"})


def _roles_swapped(claim: Claim, fact: Claim) -> bool:
    """True when two things on either side of a shared word trade places ("A mediated B" / "B mediated A").

    A switch between active and passive voice ("the compound inhibited the kinase" / "the kinase was
    inhibited by the compound") is expected to swap the sides of its verb, and is read as such.
    """
    s_once = _single_occurrences(claim)
    f_once = _single_occurrences(fact)
    for pivot in s_once.keys() & f_once.keys():
        if pivot in _SYMMETRIC:
            continue
        s_left, s_right = _sides(claim, s_once[pivot])
        f_left, f_right = _sides(fact, f_once[pivot])
        if _passive_at(claim, s_once[pivot]) != _passive_at(fact, f_once[pivot]):
            if _passive_at(fact, f_once[pivot]):
                f_left, f_right = f_right, f_left
            else:
                s_left, s_right = s_right, s_left
        movable = fronted_stems(claim) | fronted_stems(fact)
        if (s_left & (f_right - f_left) - movable) and (s_right & (f_left - f_right) - movable):
            return True
    return False


def _single_occurrences(claim: Claim) -> dict[str, int]:
    seen: dict[str, list[int]] = {}
    for t in claim.tokens:
        if is_content(t):
            seen.setdefault(t.stem, []).append(t.index)
    return {stem: idx[0] for stem, idx in seen.items() if len(idx) == 1}


def _passive_at(claim: Claim, index: int) -> bool:
    """``index`` is a verb in the passive voice: "was inhibited by"."""
    tokens = claim.tokens
    before = [t.lower for t in tokens[max(0, index - 2) : index]]
    after = tokens[index + 1 : index + 2]
    return bool(_PASSIVE_AUX & set(before)) and bool(after) and after[0].lower == "by"


def _sides(claim: Claim, index: int) -> tuple[set[str], set[str]]:
    clause_start = 0
    clause_end = len(claim.tokens)
    for t in claim.tokens:
        if t.lower in {";", "whereas", "while", "but"}:
            if t.index < index:
                clause_start = t.index + 1
            elif t.index > index and clause_end == len(claim.tokens):
                clause_end = t.index
    left = {t.stem for t in claim.tokens[clause_start:index] if is_content(t)}
    right = {t.stem for t in claim.tokens[index + 1 : clause_end] if is_content(t)}
    return left, right
