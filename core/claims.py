"""Lexical analysis of a claim: tokens, stems, quantities with units, and the cue words
(negation, direction, hedges, quantifiers) that change what a sentence asserts.

Pure functions over strings; the Verifier's guard and the local provider both build on
this, so the two see a sentence the same way.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import snowballstemmer

# -- vocabulary ---------------------------------------------------------------------------------

STOPWORDS = frozenset(
    """
    a an the this that these those it its they them their there here we our us i you he she his her of
    in on at for with by from to into onto among during across per via as and nor yet so while whereas
    although though because since thus hence therefore however also both either which who whom whose
    what when where how than then such is are was were be been being am has have had having do does did
    done shall result results study studies data finding findings we've it's found find finds observed
    observe observes reported report reports noted note notes showed show shows shown revealed reveal
    reveals demonstrated demonstrate demonstrates present presented overall respectively total
    score scores value values exhibited exhibit exhibits displayed display displays
    """.split()
)
"""Function words whose presence or absence does not change what a sentence claims."""

NEGATIONS = frozenset(
    """
    not no never none neither nor without cannot cant nothing nobody nowhere unable fail fails failed
    failing lack lacks lacked lacking absent absence unlikely non-significant nonsignificant
    insignificant non unlike
    """.split()
)
_NEGATION_SUFFIX = "n't"

# Certainty families: a sentence may be *less* certain than its fact, never more.
HEDGE_WEAK = frozenset(
    """
    may might could possibly possible perhaps potentially potential conceivably speculate speculated
    hypothesize hypothesized hypothesise hypothesised tentative tentatively preliminary putative
    putatively can would expected projected proposed anticipated planned intended forecast forecasted
    """.split()
)
HEDGE_MODERATE = frozenset(
    """
    suggest suggests suggested suggesting suggestive appear appears appeared seem seems seemed indicate
    indicates indicated likely probably presumably tend tends tended apparently
    """.split()
)
APPROXIMATORS = frozenset(
    """
    approximately about around roughly nearly almost circa ca ~ some estimated approx
    """.split()
)
BOOSTERS = frozenset(
    """
    clearly definitely definitively conclusively undoubtedly certainly prove proves proved proven
    confirm confirms confirmed establish establishes established always invariably unequivocally
    """.split()
)

UNIVERSALS = frozenset(
    """
    all every always any each entire whole universally invariably consistently generally universal
    everywhere everyone regardless across throughout nationwide worldwide globally
    """.split()
)
RESTRICTIVE_QUANTIFIERS = frozenset(
    """
    some several certain most many few subset partially partly mostly occasionally sometimes often
    frequently rarely majority minority selected only specific particular slightly marginally modestly
    moderately weakly somewhat nominally transiently temporarily borderline
    """.split()
)
QUALIFIER_PREPOSITIONS = frozenset(
    """
    in among for within under at during on with after before when if unless except only over aged below
    above between since until through throughout
    """.split()
)
CLAUSE_BREAKS = frozenset(["whereas", "while", "but", "although", "though", "however", "yet"])

# (axis, sign): words on the same axis with opposite signs contradict each other.
_DIRECTION_WORDS: dict[str, tuple[str, int]] = {}
for _axis, _up, _down in (
    (
        "amount",
        "increase increased increases increasing rise rises rose risen rising grow grew grown grows growth gain "
        "gained gains elevate elevated elevation boost boosted enhance enhanced enhances enhancement higher highest "
        "greater greatest larger largest more upregulate upregulated upregulation accelerate accelerated "
        "expand expanded expansion exceed exceeded exceeds amplify amplified double doubled triple tripled "
        "maximum max peak",
        "decrease decreased decreases decreasing decline declined declines declining reduce reduced reduces "
        "reducing reduction drop dropped drops fall fell fallen falls lower lowest less least fewer smaller "
        "smallest diminish diminished diminishes downregulate downregulated downregulation shrink shrank "
        "shrunk decelerate decelerated contract contracted attenuate attenuated halve halved loss lost lose "
        "loses minimum min cut",
    ),
    (
        "quality",
        "improve improved improves improving improvement better best benefit benefits beneficial superior "
        "outperform outperformed outperforms strengthen strengthened",
        "worsen worsened worsens worsening worse worst deteriorate deteriorated deterioration impair "
        "impaired impairs impairment harm harmed harmful inferior underperform underperformed underperforms "
        "weaken weakened",
    ),
    ("sign", "positive positively", "negative negatively"),
    ("position", "above over exceeding", "below under beneath"),
    (
        "time",
        "before earlier prior preceded precede precedes faster quicker sooner",
        "after later followed slower delayed",
    ),
    ("strength", "stronger strongest strong", "weaker weakest weak"),
    (
        "regulation",
        "activate activated activates activation stimulate stimulated stimulates agonist induce induced induces",
        "inhibit inhibited inhibits inhibition suppress suppressed suppresses antagonist block blocked blocks",
    ),
    ("estimate", "overestimate overestimated overestimates", "underestimate underestimated underestimates"),
):
    for _word in _up.split():
        _DIRECTION_WORDS[_word] = (_axis, +1)
    for _word in _down.split():
        _DIRECTION_WORDS[_word] = (_axis, -1)

RELATION_WORDS = frozenset(
    """
    than outperform outperformed outperforms underperform underperformed exceed exceeded exceeds surpass
    surpassed surpasses versus vs compared relative inhibit inhibited inhibits activate activated
    activates cause caused causes induce induced induces suppress suppressed suppresses promote promoted
    promotes precede preceded precedes predict predicted predicts regulate regulated regulates bind
    binds bound convert converted converts replace replaced replaces beat beats dominated dominates over
    """.split()
)

_UNIT_ALIASES: dict[str, str] = {
    "%": "%",
    "percent": "%",
    "pct": "%",
    "pp": "pp",
    "mg": "mg",
    "g": "g",
    "kg": "kg",
    "ug": "ug",
    "mcg": "ug",
    "ng": "ng",
    "pg": "pg",
    "t": "t",
    "tonnes": "t",
    "tons": "t",
    "ml": "ml",
    "l": "l",
    "ul": "ul",
    "dl": "dl",
    "liters": "l",
    "litres": "l",
    "nm": "nm",
    "um": "um",
    "mm": "mm",
    "cm": "cm",
    "m": "m",
    "km": "km",
    "s": "s",
    "sec": "s",
    "second": "s",
    "seconds": "s",
    "ms": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "wk": "wk",
    "week": "wk",
    "weeks": "wk",
    "mo": "mo",
    "month": "mo",
    "months": "mo",
    "y": "yr",
    "yr": "yr",
    "yrs": "yr",
    "year": "yr",
    "years": "yr",
    "hz": "hz",
    "khz": "khz",
    "mhz": "mhz",
    "ghz": "ghz",
    "v": "v",
    "mv": "mv",
    "kv": "kv",
    "a": "a",
    "ma": "ma",
    "w": "w",
    "kw": "kw",
    "mw": "mw",
    "gw": "gw",
    "kwh": "kwh",
    "mwh": "mwh",
    "wh": "wh",
    "j": "j",
    "kj": "kj",
    "mj": "mj",
    "cal": "cal",
    "kcal": "kcal",
    "pa": "pa",
    "kpa": "kpa",
    "mpa": "mpa",
    "gpa": "gpa",
    "bar": "bar",
    "atm": "atm",
    "mol": "mol",
    "mmol": "mmol",
    "umol": "umol",
    "nmol": "nmol",
    "mm_": "mm",
    "um_": "um",
    "nm_": "nm",
    "fold": "fold",
    "x": "fold",
    "times": "fold",
    "ppm": "ppm",
    "ppb": "ppb",
    "bp": "bp",
    "kb": "kb",
    "kbp": "kb",
    "mb": "mb",
    "gb": "gb",
    "tb": "tb",
    "kda": "kda",
    "da": "da",
    "db": "db",
    "k": "k",
    "kelvin": "k",
    "degc": "degc",
    "degf": "degf",
    "celsius": "degc",
    "fahrenheit": "degf",
    "ha": "ha",
    "hectare": "ha",
    "hectares": "ha",
    "acres": "acre",
    "acre": "acre",
    "mah": "mah",
    "ah": "ah",
    "c": "c",
    "points": "pt",
    "point": "pt",
}
_WORD_NUMBERS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "dozen": 12,
    "twice": 2,
    "twofold": 2,
    "threefold": 3,
    "fourfold": 4,
    "fivefold": 5,
    "tenfold": 10,
    "half": 0.5,
}
_FOLD_WORDS = {"twice", "twofold", "threefold", "fourfold", "fivefold", "tenfold"}
_COMPARATOR_PHRASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("more", "than"), ">"),
    (("greater", "than"), ">"),
    (("higher", "than"), ">"),
    (("over",), ">"),
    (("above",), ">"),
    (("exceeding",), ">"),
    (("in", "excess", "of"), ">"),
    ((">",), ">"),
    (("less", "than"), "<"),
    (("fewer", "than"), "<"),
    (("lower", "than"), "<"),
    (("under",), "<"),
    (("below",), "<"),
    (("<",), "<"),
    (("up", "to"), "<="),
    (("at", "most"), "<="),
    (("<", "="), "<="),
    (("≤",), "<="),
    (("at", "least"), ">="),
    ((">", "="), ">="),
    (("≥",), ">="),
    (("=",), "="),
)

_TOKEN_RE = re.compile(
    r"(?P<num>(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|(?<![\w.])\.\d+(?![\w]))"
    r"|(?P<word>[^\W_][\w]*(?:['’-][\w]+)*)"
    r"|(?P<qopen>(?:^|(?<=[\s(\[]))[\"'](?=\S))|(?P<qclose>(?<=\S)[\"'](?=[\s.,;:)\]]|$))"
    r"|(?P<sym>[%°<>≤≥=±~×/;:,.()])"
)
_GLUED_UNIT_RE = re.compile(r"(?<![\w.,-])(\d+(?:[.,]\d+)*)([A-Za-zµμ]+)\b")
_E_NOTATION_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")
_POWER_OF_TEN_RE = re.compile(r"(?<![\d.×x*]\s)(?<![\d.×x*])\b10\^([-+]?\d+)")
_SCIENTIFIC_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[×x*]\s*10\^?\s*([-+]?\d+)")
_MULTIPLIERS = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_MULTIPLIER_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s+(thousand|million|billion|trillion)\b", re.IGNORECASE)
_stemmers = threading.local()
"""One Snowball stemmer per thread: a stemmer keeps state while it works, so jobs running on
parallel threads corrupt a shared one (seen: IndexError inside snowballstemmer)."""


def _stemmer() -> Any:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return stemmer


def _plain(value: float) -> str:
    """A number written without exponent or grouping, so every spelling of it compares equal."""
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text or "0"


_SAME_AS_COMPARED = frozenset({"versus", "vs", "compared", "compare", "relative"})
"""Ways of saying "compared with" that make the same claim."""


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    irregular = {
        "mice": "mouse",
        "children": "child",
        "women": "woman",
        "men": "man",
        "teeth": "tooth",
        "feet": "foot",
        "analyses": "analysis",
        "hypotheses": "hypothesis",
        "data": "data",
        "rose": "rise",
        "risen": "rise",
        "fell": "fall",
        "fallen": "fall",
        "grew": "grow",
        "grown": "grow",
        "lost": "lose",
        "shrank": "shrink",
        "slept": "sleep",
        "kept": "keep",
        "felt": "feel",
        "held": "hold",
        "led": "lead",
        "made": "make",
        "took": "take",
        "taken": "take",
        "gave": "give",
        "given": "give",
        "began": "begin",
        "begun": "begin",
        "brought": "bring",
        "chose": "choose",
        "chosen": "choose",
        "drew": "draw",
        "drawn": "draw",
        "ate": "eat",
        "eaten": "eat",
        "fed": "feed",
        "met": "meet",
        "ran": "run",
        "saw": "see",
        "seen": "see",
        "sought": "seek",
        "spent": "spend",
        "sold": "sell",
        "told": "tell",
        "thought": "think",
        "won": "win",
        "wrote": "write",
        "written": "write",
        "drove": "drive",
        "driven": "drive",
        "knew": "know",
        "known": "know",
        "bound": "bind",
        "built": "build",
        "caught": "catch",
        "became": "become",
        "paid": "pay",
        "spread": "spread",
        "froze": "freeze",
        "frozen": "freeze",
        "bred": "breed",
        "dealt": "deal",
        "meant": "mean",
        "underwent": "undergo",
        "undergone": "undergo",
        "withdrew": "withdraw",
        "withdrawn": "withdraw",
    }
    word = irregular.get(word, word)
    if word in _SAME_AS_COMPARED:
        return "compar"
    if word == "post":
        return "after"  # "post-challenge" / "after challenge"
    return str(_stemmer().stemWord(word))


def normalize(text: str) -> str:
    """Unicode-normalised text with one kind of dash, quote and micro sign."""
    text = unicodedata.normalize("NFKC", text)
    text = (
        text.replace("“", '"')
        .replace("”", '"')
        .replace("‘", "'")
        .replace("−", "-")
        .replace("–", "-")
        .replace("—", " - ")
        .replace("‐", "-")
        .replace("’", "'")
        .replace("µ", "u")
        .replace("μ", "u")
        .replace("\u00a0", " ")
    )
    text = re.sub(r"°\s*([CF])\b", lambda m: f" deg{m.group(1).lower()}", text)
    text = re.sub(r"\bdegrees?\s+(?:celsius|c)\b", " degc", text, flags=re.IGNORECASE)
    text = re.sub(r"\bdegrees?\s+(?:fahrenheit|f)\b", " degf", text, flags=re.IGNORECASE)
    text = re.sub(r"\bper\s*cent\b", "percent", text, flags=re.IGNORECASE)
    text = re.sub(r"(?<=\d)\s*%", " %", text)
    text = re.sub(r"\bpercent\b", "%", text, flags=re.IGNORECASE)
    text = _E_NOTATION_RE.sub(lambda m: _plain(float(m.group(0))), text)
    text = _POWER_OF_TEN_RE.sub(lambda m: _plain(10.0 ** int(m.group(1))), text)
    text = text.replace("^", "")
    text = _SCIENTIFIC_RE.sub(lambda m: _plain(float(m.group(1)) * 10 ** int(m.group(2))), text)
    text = _MULTIPLIER_RE.sub(
        lambda m: _plain(float(m.group(1).replace(",", "")) * _MULTIPLIERS[m.group(2).lower()]), text
    )
    text = re.sub(r"\bpercentage\s+points?\b", "pp", text, flags=re.IGNORECASE)

    def unglue(match: re.Match[str]) -> str:
        unit = match.group(2).lower().replace("µ", "u").replace("μ", "u")
        return f"{match.group(1)} {match.group(2)}" if unit in _UNIT_ALIASES else match.group(0)

    return _GLUED_UNIT_RE.sub(unglue, text)


# -- structures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    surface: str  # as written (after normalisation), case kept
    lower: str
    stem: str
    kind: str  # "word" | "number" | "symbol"
    index: int
    value: float | None = None


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None
    comparator: str  # "=", "<", ">", "<=", ">="
    approximate: bool
    text: str
    index: int  # token index of the number

    def describe(self) -> str:
        approx = "about " if self.approximate else ""
        comp = "" if self.comparator == "=" else f"{self.comparator} "
        unit = f" {self.unit}" if self.unit else ""
        return f"{approx}{comp}{self.text}{unit}".strip()


@dataclass
class Clause:
    tokens: list[Token]
    shares_subject: bool = False  # "... and decreased Y": the verb's subject is the previous clause's
    bracketed: set[str] = field(default_factory=set)  # content found only inside brackets: asides

    @property
    def core(self) -> set[str]:
        """What the clause claims, without its restrictions and bracketed asides."""
        return (self.content - self.qualifier_stems - self.bracketed) or self.content

    content: set[str] = field(default_factory=set)  # content stems
    qualifiers: list[set[str]] = field(default_factory=list)  # content stems of each qualifier phrase
    qualifier_stems: set[str] = field(default_factory=set)
    negated: bool = False
    hedge: int = 0  # 0 none, 1 approx, 2 moderate, 3 weak
    restrictive: set[str] = field(default_factory=set)
    quantities: list[Quantity] = field(default_factory=list)


@dataclass
class Claim:
    text: str
    tokens: list[Token]
    quantities: list[Quantity]
    clauses: list[Clause]
    content: set[str]
    entities: set[str]  # lower-cased entity-like surfaces

    @property
    def negated(self) -> bool:
        return any(c.negated for c in self.clauses)

    @property
    def hedge(self) -> int:
        return max((c.hedge for c in self.clauses), default=0)


# -- analysis ------------------------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN_RE.finditer(normalize(text)):
        surface = match.group(0)
        kind = match.lastgroup or "sym"
        lower = surface.lower()
        value: float | None = None
        if kind == "num":
            value = float(surface.replace(",", ""))
            start = match.start()
            source = match.string
            if start >= 1 and source[start - 1] == "-" and (start < 2 or not source[start - 2].isalnum()):
                value = -value
            kind = "number"
        elif kind == "word":
            if lower in _WORD_NUMBERS:
                kind, value = "number", float(_WORD_NUMBERS[lower])
        elif kind in ("qopen", "qclose"):
            tokens.append(Token(surface, "«" if kind == "qopen" else "»", "", "symbol", len(tokens), None))
            continue
        else:
            kind = "symbol"
        if kind == "word" and "-" in lower and lower not in NEGATIONS and not any(ch.isdigit() for ch in lower):
            # "minimum-wage" and "minimum wage" make the same claim
            for part in surface.split("-"):
                if part and part.lower() not in STOPWORDS:
                    tokens.append(Token(part, part.lower(), stem(part.lower()), "word", len(tokens), None))
            continue
        if kind == "word" and len(lower) > 1 and lower in _UNIT_ALIASES:
            word_stem = "unit:" + _UNIT_ALIASES[lower]  # "hours" and "h" are one unit
        else:
            word_stem = stem(lower) if kind == "word" else lower
        tokens.append(Token(surface, lower, word_stem, kind, len(tokens), value))
    return tokens


def _is_negation(token: Token) -> bool:
    return token.kind == "word" and (token.lower in NEGATIONS or token.lower.endswith(_NEGATION_SUFFIX))


STRONG_NEGATIONS = frozenset({"none", "neither", "nobody", "nothing", "never", "nowhere"})
"""Negations that quantify ("none of", "never"): a sentence may use one only where its fact does."""


def negation_cue(tokens: list[Token], i: int) -> bool:
    """Whether ``tokens[i]`` negates what follows it ("not", "no", "without", "rather than", "instead of")."""
    t = tokens[i]
    nxt = tokens[i + 1].lower if i + 1 < len(tokens) else ""
    if t.lower == "not" and nxt == "only":
        return False
    if t.lower == "rather":
        return nxt == "than"
    if t.lower == "instead":
        return nxt == "of"
    return _is_negation(t)


def hedge_level(word: str) -> int:
    if word in HEDGE_WEAK:
        return 3
    if word in HEDGE_MODERATE:
        return 2
    if word in APPROXIMATORS:
        return 1
    return 0


def direction_of(word: str) -> tuple[str, int] | None:
    return _DIRECTION_WORDS.get(word)


def is_content(token: Token) -> bool:
    if token.kind != "word":
        return False
    if len(token.surface) == 1 and token.surface.isupper() and token.surface != "I" and token.index > 0:
        return True  # a named group or variant: "drug A", "Type B" (the article "a" is lower-case)
    lower = token.lower
    return not (
        lower in STOPWORDS or _is_negation(token) or hedge_level(lower) or lower in BOOSTERS or lower in _WORD_NUMBERS
    )


_RANGE_OPENERS = frozenset({"between"})


def content_positions(tokens: list[Token]) -> list[int]:
    """Positions (in ``tokens``) of the content words; a unit right after its number belongs to the
    number, and "between" before a number says what "from" says."""
    return [i for i, t in enumerate(tokens) if t.stem in content_stems([t]) and _counts_here(tokens, i)]


def _counts_here(tokens: list[Token], i: int) -> bool:
    t = tokens[i]
    if t.lower in _RANGE_OPENERS and i + 1 < len(tokens) and tokens[i + 1].kind == "number":
        return False
    return not (
        t.stem.startswith("unit:")
        and i > 0
        and (
            tokens[i - 1].kind == "number" or (tokens[i - 1].lower == "-" and i > 1 and tokens[i - 2].kind == "number")
        )
    )


def content_stems(tokens: list[Token]) -> set[str]:
    """Stems of the content words; a unit right after its number belongs to the number."""
    stems: set[str] = set()
    for i, t in enumerate(tokens):
        if not is_content(t):
            continue
        if (
            t.stem.startswith("unit:")
            and i > 0
            and (
                tokens[i - 1].kind == "number"
                or (tokens[i - 1].lower == "-" and i > 1 and tokens[i - 2].kind == "number")
            )
        ):
            continue
        stems.add(t.stem)
    return stems


GENERIC_HEADS = frozenset(
    """
    benchmark dataset data set corpus task test suit databas model method algorithm trial studi cohort
    sampl survey experi challeng competit leaderboard gene protein enzym phosphatas kinas receptor strain
    compound molecul line protocol index
    """.split()
)
"""Words that name what kind of thing a proper name is ("the MMLU benchmark"), adding no restriction."""

FRONTING = QUALIFIER_PREPOSITIONS | frozenset(
    [
        "relative",
        "compared",
        "across",
        "despite",
        "following",
        "unlike",
        "like",
        "throughout",
        "by",
        "from",
        "to",
        "given",
        "upon",
        "without",
    ]
)


def fronted_stems(claim: Claim) -> set[str]:
    """Stems of a phrase moved to the front before a comma ("Under drought, ..."), which may move freely."""
    tokens = claim.tokens
    if not tokens or tokens[0].lower not in FRONTING:
        return set()
    comma = next((t.index for t in tokens[:12] if t.lower == ","), None)
    return content_stems(tokens[:comma]) if comma is not None else set()


def _is_entity(token: Token, first_word_index: int) -> bool:
    if token.kind != "word" or token.lower in STOPWORDS:
        return False
    surface = token.surface
    has_digit = any(ch.isdigit() for ch in surface)
    has_alpha = any(ch.isalpha() for ch in surface)
    if has_digit and has_alpha:
        return True  # IL-6, CO2, BRCA1, COVID-19
    if len(surface) > 1 and surface.isupper():
        return True  # acronyms
    return surface[:1].isupper() and token.index != first_word_index


def _quantities(tokens: list[Token]) -> list[Quantity]:
    found: list[Quantity] = []
    for i, token in enumerate(tokens):
        if token.kind != "number" or token.value is None:
            continue
        lower = token.lower
        unit: str | None = "fold" if lower in _FOLD_WORDS else None
        j = i + 1
        if unit is None and j < len(tokens):
            nxt = tokens[j]
            if nxt.lower == "-" and j + 1 < len(tokens):  # 2-fold
                j += 1
                nxt = tokens[j]
            if nxt.lower in _UNIT_ALIASES and (nxt.kind in ("word", "symbol")):
                unit = _UNIT_ALIASES[nxt.lower]
                if j + 2 < len(tokens) and tokens[j + 1].lower in ("/", "per") and tokens[j + 2].lower in _UNIT_ALIASES:
                    unit = f"{unit}/{_UNIT_ALIASES[tokens[j + 2].lower]}"
        # what stands before the number: a comparator, an approximator
        comparator = "="
        approximate = False
        before = [t.lower for t in tokens[max(0, i - 3) : i]]
        for phrase, symbol in _COMPARATOR_PHRASES:
            if tuple(before[-len(phrase) :]) == phrase:
                comparator = symbol
                break
        if before and (before[-1] in APPROXIMATORS or before[-2:-1] == ["~"]) and before[-1] != "some":
            approximate = True
        found.append(Quantity(token.value, unit, comparator, approximate, token.surface, i))
    return found


_APPENDED = frozenset({"with", "including", "ranging"})
_AUXILIARIES = frozenset({"had", "has", "have", "was", "were", "is", "are", "did", "does", "showed", "remained"})


def _list_item_before(tokens: list[Token], comma: int) -> bool:
    """ ", and" closing a list ("age, sex, and STS score"): the item before the comma is a word or two."""
    words = 0
    for t in reversed(tokens[:comma]):
        if t.lower == ",":
            return words <= 2
        if t.kind != "symbol":
            words += 1
        if words > 2:
            return False
    return False


def _split_clauses(tokens: list[Token]) -> list[list[Token]]:
    clauses: list[list[Token]] = [[]]
    depth = 0
    for i, token in enumerate(tokens):
        depth += (token.lower in {"(", "["}) - (token.lower in {")", "]"})
        if depth > 0:
            clauses[-1].append(token)  # "(HFrEF; LVEF <= 40%)" is an aside, not a clause boundary
            continue
        breaks = token.lower == ";" or (
            token.lower in CLAUSE_BREAKS and i > 0 and (tokens[i - 1].lower == "," or token.lower != "yet")
        )
        if (
            token.lower == "and"
            and i > 0
            and (
                (tokens[i - 1].lower == "," and not _list_item_before(tokens, i - 1))
                or (
                    i + 1 < len(tokens)
                    and (
                        _looks_like_verb(tokens[i + 1])
                        or tokens[i + 1].lower in _AUXILIARIES
                        or tokens[i + 1].lower in NEGATIONS
                    )
                )
            )
        ):
            breaks = True
        if token.lower in _APPENDED and i > 0 and tokens[i - 1].lower == ",":
            breaks = True  # ", with individual changes ranging ..." adds to the claim before it
        if breaks and clauses[-1]:
            clauses.append([])
        clauses[-1].append(token)
    return [c for c in clauses if any(t.kind != "symbol" for t in c)]


_DISCOURSE = frozenset({"summary", "conclusion", "addition", "contrast", "particular", "short", "brief", "turn", "sum"})
"""'In summary,' and its kin link a sentence to its neighbours; they restrict nothing."""


def _bracketed_only(tokens: list[Token]) -> set[str]:
    inside: set[str] = set()
    outside: set[str] = set()
    depth = 0
    for t in tokens:
        depth += (t.lower in {"(", "["}) - (t.lower in {")", "]"})
        if is_content(t):
            (inside if depth > 0 else outside).add(t.stem)
    return inside - outside


def _looks_like_verb(token: Token) -> bool:
    # No tagger here: a past form ("treated", "indicated") ends the phrase that restricts it.
    return token.kind == "word" and len(token.lower) > 4 and token.lower.endswith("ed")


def _qualifiers(tokens: list[Token]) -> list[set[str]]:
    """Content stems of each restrictive phrase (``in sandy soils``, ``in patients over 65``)."""
    phrases: list[set[str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        behind = tokens[max(0, i - 4) : i]
        discourse = i + 1 < len(tokens) and token.lower == "in" and tokens[i + 1].lower in _DISCOURSE
        if discourse:
            i += 2
            continue
        dated = token.lower == "from" and i + 1 < len(tokens) and tokens[i + 1].kind == "number"
        if (token.lower in QUALIFIER_PREPOSITIONS or dated) and not (
            any(t.stem == "compar" or t.lower == "than" for t in behind) and any(t.kind == "number" for t in behind)
        ):
            stems: set[str] = set()
            j = i + 1
            content_seen = 0
            while j < len(tokens) and content_seen < 3:
                nxt = tokens[j]
                if nxt.lower in {",", ";", ".", ":", "(", ")", "and", "or", "than", "that", "which", "compared"}:
                    break
                if nxt.stem == "compar" or (content_seen and _looks_like_verb(nxt)):
                    break
                if nxt.lower in CLAUSE_BREAKS or (nxt.lower in QUALIFIER_PREPOSITIONS and content_seen):
                    break
                if direction_of(nxt.lower) or nxt.lower in {"was", "were", "is", "are", "had", "has"}:
                    break
                if is_content(nxt) and not nxt.stem.startswith("unit:"):
                    stems.add(nxt.stem)
                    content_seen += 1
                elif nxt.kind == "number" and not (token.lower == "among" and j == i + 1):
                    stems.add(f"#{nxt.value:g}")  # but "among 14,203 adults" counts them, it restricts nothing
                    content_seen += 1
                j += 1
            if stems:
                phrases.append(stems)
            i = j
            continue
        i += 1
    return phrases


def quoted_indices(tokens: list[Token]) -> set[int]:
    """Token indices inside a closed quotation: an example quoted in a fact ("'may cause nausea'")
    is mentioned, not asserted, so its cue words do not hedge or negate the fact."""
    inside: set[int] = set()
    opened: list[int] | None = None
    for t in tokens:
        if t.lower == "«":
            opened = []
        elif t.lower == "»" and opened is not None:
            inside.update(opened)
            opened = None
        elif opened is not None:
            opened.append(t.index)
    return inside


def _clause(tokens: list[Token]) -> Clause:
    content = content_stems(tokens)
    qualifiers = _qualifiers(tokens)
    quoted = quoted_indices(tokens)
    all_tokens = tokens
    tokens_for_cues = [t for t in tokens if t.index not in quoted]
    negated = False
    tokens = tokens_for_cues
    for i in range(len(tokens)):
        if negation_cue(tokens, i):
            negated = True
    hedge = 0
    for i, t in enumerate(tokens):
        level = hedge_level(t.lower)
        # "about" and its kin hedge only a number ("about 20%"), not a topic ("about the mechanism")
        if level == 1 and not (i + 1 < len(tokens) and tokens[i + 1].kind == "number"):
            continue
        hedge = max(hedge, level)
    return Clause(
        tokens=all_tokens,
        content=content,
        qualifiers=qualifiers,
        qualifier_stems=set().union(*qualifiers) if qualifiers else set(),
        negated=negated,
        hedge=hedge,
        restrictive={t.lower for t in tokens if t.lower in RESTRICTIVE_QUANTIFIERS},
        quantities=_quantities(tokens),
    )


@lru_cache(maxsize=4096)
def analyse(text: str) -> Claim:
    tokens = tokenize(text)
    first_word = next((t.index for t in tokens if t.kind == "word"), -1)
    clauses = [_clause(c) for c in _split_clauses(tokens)]
    for clause in clauses[1:]:
        first = clause.tokens[0]
        comma_before = first.index > 0 and tokens[first.index - 1].lower == ","
        clause.shares_subject = first.lower == "and" and not comma_before
    # A fronted phrase ("In adults aged 65 years or older, ...", "Between 2000 and 2010, ...") restricts
    # every clause after it, as one qualifier.
    fronted = bool(tokens) and (
        tokens[0].lower in QUALIFIER_PREPOSITIONS
        or (tokens[0].lower == "from" and len(tokens) > 1 and tokens[1].kind == "number")
    )
    if fronted:
        comma = next((t.index for t in tokens[:12] if t.lower == ","), None)
        phrase = tokens[:comma] if comma is not None else []
        if any(t.lower in _AUXILIARIES or t.lower == "that" or _looks_like_verb(t) for t in phrase):
            comma = None  # "In situ DRIFTS indicated that ...," is a clause, not a fronted restriction
        if comma is not None and clauses:
            lead = content_stems(phrase) | {
                f"#{t.value:g}" for t in phrase if t.kind == "number" and t.value is not None
            }
            lead -= {"summari", "conclus", "addit", "contrast", "particular"}  # "In summary," restricts nothing
            if lead:
                for clause in clauses:
                    clause.qualifiers.append(lead)
                    clause.qualifier_stems |= lead
    for clause in clauses:
        clause.bracketed = _bracketed_only(clause.tokens)
    return Claim(
        text=text,
        tokens=tokens,
        quantities=_quantities(tokens),
        clauses=clauses,
        content=content_stems(tokens),
        entities={t.lower for t in tokens if _is_entity(t, first_word)},
    )


ASSOCIATIONS = frozenset(
    """
    associated association associations correlated correlation correlations correlates linked link
    related relationship predicted predicts coincided
    """.split()
)
"""Words that report co-occurrence; restating such a fact without one turns it into a causal claim."""


def abbreviations(claim: Claim) -> dict[str, set[str]]:
    """Abbreviations the text defines, ``progression-free survival (PFS)``: stem of ``PFS`` -> long-form stems."""
    found: dict[str, set[str]] = {}
    tokens = claim.tokens
    for i, t in enumerate(tokens):
        if t.lower != "(" or i + 1 >= len(tokens):
            continue
        abbr = tokens[i + 1]
        letters = [ch for ch in abbr.surface.rstrip("s+") if ch.isalpha()]
        words = [w for w in tokens[max(0, i - 10) : i] if w.kind == "word" and w.lower not in STOPWORDS]
        if abbr.kind != "word" or not 2 <= len(letters) <= 8:
            continue
        if sum(ch.isupper() for ch in letters) < 2:
            # lower-case abbreviations ("ee", "dr") only when the initials spell them exactly
            initials = "".join(w.lower[:1] for w in words[-len(letters) :])
            if len(letters) > 3 or initials != "".join(letters).lower():
                continue
        capitals = sum(ch.isupper() for ch in letters)
        if capitals < 2:
            capitals = len(letters)  # "ee": one word per letter
        best: list[Token] | None = None
        for k in range(1, min(len(words), len(letters)) + 1):
            span = words[-k:]
            if span[0].lower[:1] == letters[0].lower() and (
                best is None or abs(k - capitals) < abs(len(best) - capitals)
            ):
                best = span
        if best:
            found[abbr.stem] = {w.stem for w in best}
    return found


def entity_stems(claim: Claim) -> set[str]:
    return {t.stem for t in claim.tokens if t.lower in claim.entities}


def number_stems(quantities: list[Quantity]) -> set[str]:
    return {f"#{q.value:g}" for q in quantities}
