"""Cut a document's page texts into chunks of about ``target_tokens`` tokens.

The pages are joined into one text (a newline between pages, or a space when a sentence runs on
to the next page); every chunk is a verbatim slice of that text, so a quote found in a chunk is
text the PDF contains. Chunks end on sentence boundaries (never inside a sentence), preferably on
a paragraph boundary, and may span pages; ``page_offsets`` records where each page starts inside a
chunk so any offset maps back to the page it is printed on.

Tokens are counted in one pass, sentence by sentence; a chunk's ``token_count`` is summed from its
sentences and still equals ``core.tokens.count_tokens(chunk.text)`` exactly (see ``_Tokens``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

from core.tokens import count_tokens, encoding

PARAGRAPH_BACKOFF = 0.5
"""A chunk that overflows ends at its last paragraph break if that keeps at least this share of the target."""

# Abbreviations after which a full stop does not end a sentence ("et al. (2022)", "Fig. 2", "sp. HR-14").
_ABBREVIATIONS = (
    "al", "e.g", "i.e", "cf", "vs", "viz", "approx", "ca", "Fig", "Figs", "fig", "Eq", "Eqs", "eq", "Ref", "Refs",
    "No", "no", "Nos", "Vol", "vol", "pp", "Ch", "Sect", "Sec", "Tab", "Suppl", "sp", "spp", "subsp", "var", "cv",
    "Dr", "Prof", "Mr", "Mrs", "Ms", "St", "resp", "incl", "Inc", "Ltd", "Co", "Corp", "Jr", "Sr", "et",
)  # fmt: skip
# Nor after an initial ("A. Quispe") or a section number at the start of a line ("2. Methods"). When in
# doubt we do not split: a missed boundary only makes a unit longer, a wrong one could split a sentence.
_NOT_AFTER = "".join(rf"(?<!\b{re.escape(a)}\.)" for a in _ABBREVIATIONS) + r"(?<!\b[A-Z]\.)(?<!^\d\.)(?<!^\d\d\.)"
_CLOSE = "[)\\]\"'\u2019\u201d]*"
_OPENS_SENTENCE = "(?=[A-Z0-9(\\[\"'\u2018\u201c])"
# A boundary is a newline (paragraph or heading), or sentence-final punctuation, optional closing
# brackets or quotes, spaces, then something that can start a sentence. Every boundary starts with
# one of "\n.!?", written first so the regex engine skips ahead to those characters (2-3x faster).
_BOUNDARY = re.compile(
    rf"[\n.!?](?:(?<=\n)(?P<para>\n*)|(?<=\.){_NOT_AFTER}{_CLOSE}(?P<gap> +){_OPENS_SENTENCE}"
    rf"|(?<=[!?]){_CLOSE}(?P<bang> +){_OPENS_SENTENCE})",
    re.MULTILINE,
)

HEADING_MAX_TOKENS = 16
"""A line this short without final punctuation is a heading and stays with the text after it."""
_HEADING_END = ".!?:;,"
_TERMINAL = ".!?:"
_CLOSERS = ")]\"'\u2019\u201d"


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is stored: what ``core.documents`` writes as a ``Chunk`` row."""

    ordinal: int
    """0-based position in the document."""
    text: str
    page: int
    """1-based page the chunk starts on."""
    page_end: int
    token_count: int
    page_offsets: list[list[int]] = field(default_factory=list)
    """``[[offset_in_text, page], ...]``: page ``page`` starts at ``offset_in_text`` (the first is ``[0, page]``)."""


def page_at(page_offsets: list[list[int]], offset: int) -> int:
    """The 1-based page on which character ``offset`` of a chunk's text is printed."""
    if not page_offsets:
        raise ValueError("page_offsets is empty: the chunk has no page anchors")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    index = bisect_right([start for start, _page in page_offsets], offset) - 1
    return int(page_offsets[max(index, 0)][1])


def _separator(before: str, after: str) -> str:
    """What joins the end of one page to the start of the next."""
    if before[-1] == "-" and len(before) > 1 and before[-2].isalnum() and after[0].islower():
        return ""  # a word hyphenated over the page break: keep it whole (hyphen included)
    if before.rstrip(_CLOSERS)[-1:] in _TERMINAL:
        return "\n"
    return " "  # the sentence runs on to the next page


def _join(pages: list[str]) -> tuple[str, list[int], list[int]]:
    """The document text, and the offset where each non-empty page starts with its 1-based number."""
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    length = 0
    previous = ""
    for number, page in enumerate(pages, start=1):
        page = page.strip()
        if not page:
            continue
        if previous:
            separator = _separator(previous, page)
            parts.append(separator)
            length += len(separator)
        starts.append(length)
        numbers.append(number)
        parts.append(page)
        length += len(page)
        previous = page
    return "".join(parts), starts, numbers


def _sentences(text: str) -> tuple[list[tuple[int, int]], list[bool]]:
    """Sentence spans (start, end) over ``text`` and, for each, whether a paragraph break follows it."""
    spans: list[tuple[int, int]] = []
    breaks: list[bool] = []
    position = 0
    for match in _BOUNDARY.finditer(text):
        name = match.lastgroup or "para"
        # A sentence keeps its full stop and closing brackets; a paragraph break ends where the newline starts.
        end = match.start() if name == "para" else match.start(name)
        _add_span(text, position, end, name == "para", spans, breaks)
        position = match.end()
    _add_span(text, position, len(text), True, spans, breaks)
    return spans, breaks


def _add_span(text: str, start: int, end: int, para: bool, spans: list[tuple[int, int]], breaks: list[bool]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        start += len(piece) - len(piece.lstrip())
        spans.append((start, start + len(stripped)))
        breaks.append(para)
    elif para and breaks:
        breaks[-1] = True


class _Tokens:
    """Token counts of sentences, and of chunks built from them, with a single pass of the tokenizer.

    Each sentence is encoded as it sits inside a chunk: with the spaces before it and the newlines after
    it. tiktoken's pre-tokenizer never joins text across such a gap (a space starts a new piece, and
    newlines end the piece before them), so a chunk's count is the sum of its sentences' counts, with
    only its first and last sentence re-encoded without the gap outside the chunk. Gaps of mixed
    whitespace (only from unnormalised input) are not trusted: such chunks are counted whole.
    """

    def __init__(self, text: str, spans: list[tuple[int, int]]) -> None:
        count = len(spans)
        self.text, self.spans = text, spans
        self.leads, self.trails = [""] * count, [""] * count
        self.mixed = [False] * count  # the gap before sentence i is neither spaces nor newlines only
        for i in range(1, count):
            gap = text[spans[i - 1][1] : spans[i][0]]
            if not gap.strip(" "):
                self.leads[i] = gap
            elif not gap.strip("\n"):
                self.trails[i - 1] = gap
            else:
                self.mixed[i] = True
        self.encode = encoding().encode_ordinary  # the tokens count_tokens counts, without its per-call checks
        self.counts = [
            len(self.encode(lead + text[start:end] + trail))
            for (start, end), lead, trail in zip(spans, self.leads, self.trails, strict=True)
        ]

    def chunk(self, first: int, end: int) -> int:
        """Tokens of ``text[spans[first].start : spans[end - 1].end]``, equal to ``count_tokens`` of it."""
        last = end - 1
        if any(self.mixed[first + 1 : end]):
            return count_tokens(self.text[self.spans[first][0] : self.spans[last][1]])
        if first == last:
            if not (self.leads[first] or self.trails[first]):
                return self.counts[first]
            return len(self.encode(self.text[self.spans[first][0] : self.spans[first][1]]))
        total = sum(self.counts[first:end])
        if self.leads[first]:
            start, stop = self.spans[first]
            total += len(self.encode(self.text[start:stop] + self.trails[first])) - self.counts[first]
        if self.trails[last]:
            start, stop = self.spans[last]
            total += len(self.encode(self.leads[last] + self.text[start:stop])) - self.counts[last]
        return total


def _pack(counts: list[int], breaks: list[bool], headings: list[bool], target: int) -> list[tuple[int, int]]:
    """Group sentences into chunks: (first, end) index ranges, greedy up to ``target`` tokens each."""
    prefix = [0]
    for count in counts:
        prefix.append(prefix[-1] + count)
    ranges: list[tuple[int, int]] = []
    first = 0
    index = 0
    while index < len(counts):
        if index > first and prefix[index + 1] - prefix[first] > target:
            end = index
            # Prefer to end on a paragraph break, unless that leaves a small chunk.
            for candidate in range(index - 1, first - 1, -1):
                if breaks[candidate] and not headings[candidate]:
                    if prefix[candidate + 1] - prefix[first] >= PARAGRAPH_BACKOFF * target:
                        end = candidate + 1
                    break
            while end - 1 > first and headings[end - 1]:
                end -= 1  # a heading belongs with the text it introduces
            ranges.append((first, end))
            first = end
            continue  # re-check sentence ``index`` against the new chunk
        index += 1
    if first < len(counts):
        ranges.append((first, len(counts)))
    return ranges


def chunk_pages(pages: list[str], *, target_tokens: int) -> list[ChunkDraft]:
    """Chunks of about ``target_tokens`` tokens from the normalised text of each page (index 0 is page 1).

    A sentence longer than the target becomes a chunk of its own: sentences are never split.
    """
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be >= 1, got {target_tokens}")
    text, starts, numbers = _join(pages)
    if not text:
        return []
    spans, breaks = _sentences(text)
    tokens = _Tokens(text, spans)
    headings = [
        brk and count <= HEADING_MAX_TOKENS and text[end - 1] not in _HEADING_END
        for (_start, end), brk, count in zip(spans, breaks, tokens.counts, strict=True)
    ]
    drafts: list[ChunkDraft] = []
    for ordinal, (first, end) in enumerate(_pack(tokens.counts, breaks, headings, target_tokens)):
        chunk_start, chunk_end = spans[first][0], spans[end - 1][1]
        chunk_text = text[chunk_start:chunk_end]
        index = bisect_right(starts, chunk_start) - 1
        offsets = [[0, numbers[index]]]
        index += 1
        while index < len(starts) and starts[index] < chunk_end:
            offsets.append([starts[index] - chunk_start, numbers[index]])
            index += 1
        drafts.append(
            ChunkDraft(
                ordinal=ordinal,
                text=chunk_text,
                page=offsets[0][1],
                page_end=offsets[-1][1],
                token_count=tokens.chunk(first, end),
                page_offsets=offsets,
            )
        )
    return drafts
