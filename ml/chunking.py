"""Split a parsed document into chunks that each fit the embedding model whole.

Chunks never span two sections, so a retrieved chunk always belongs under one heading;
nothing is truncated: text that does not fit is split (paragraphs, sentences, words,
then characters) and consecutive chunks of a section share a little text for context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ml.parsing import HEADING_SEPARATOR, ParsedDocument

MIN_BODY_TOKENS = 32  # below this a chunk cannot hold a useful sentence
MIN_FRAGMENT_TOKENS = 16  # how finely an over-long sentence is cut, so overlap can reuse its tail
PARAGRAPH = "\n\n"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? (maybe closed by a quote or bracket) before a non-lowercase
# character, so "e.g. this" stays whole; a line break also ends one, which keeps lists intact.
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))[ \t]+(?=[^a-z\s])|[ \t]*\n[ \t]*",
)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    heading: str
    text: str  # the chunk body shown to people and to the LLM
    embed_text: str  # what gets embedded: title + heading + body
    token_count: int  # count_tokens(embed_text)


@dataclass(frozen=True)
class _Unit:
    """The smallest piece packing moves around: a sentence, or a fragment of an over-long one."""

    sep: str  # what joins it to the unit before: PARAGRAPH, a line break, a space or ""
    text: str
    cost: int  # tokens it adds to a chunk, header and special tokens excluded


def chunk_document(
    doc: ParsedDocument,
    count_tokens: Callable[[str], int],
    *,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """Chunk each section separately; every chunk's `count_tokens(embed_text)` is <= max_tokens.

    `count_tokens` must count what the embedding model sees, special tokens included.
    """
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must be >= 0, got {overlap_tokens}")
    if max_tokens - count_tokens("") < MIN_BODY_TOKENS:
        raise ValueError(f"max_tokens={max_tokens} leaves fewer than {MIN_BODY_TOKENS} tokens for text")
    chunks: list[Chunk] = []
    for section in doc.sections:
        header = _fit_header(doc.title, section.heading, count_tokens, max_tokens // 2)
        packer = _SectionPacker(header, count_tokens, max_tokens, overlap_tokens)
        for body, tokens in packer.pack(section.text):
            chunks.append(Chunk(len(chunks), section.heading, body, _embed_text(header, body), tokens))
    return chunks


def _embed_text(header: str, body: str) -> str:
    return f"{header}{PARAGRAPH}{body}" if header else body


def _fit_header(title: str, heading: str, count_tokens: Callable[[str], int], limit: int) -> str:
    """Title and heading for embed_text, shortened only when they would crowd out the body."""
    last = heading.rsplit(HEADING_SEPARATOR, 1)[-1]
    candidates = ["\n".join(p for p in parts if p) for parts in ((title, heading), (title, last), (last,))]
    for candidate in candidates:
        if count_tokens(candidate) <= limit:
            return candidate
    longest = _longest_fitting_prefix(len(last), lambda k: count_tokens(last[:k] + "…") <= limit)
    return last[:longest] + "…" if longest else ""


def _longest_fitting_prefix(n: int, fits: Callable[[int], bool]) -> int:
    """Largest k <= n with fits(k), or 0; exponential then binary search, so O(log k) probes."""
    if n == 0 or not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= n and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, n + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _join(units: list[_Unit]) -> str:
    return units[0].text + "".join(u.sep + u.text for u in units[1:])


def _sentences(paragraph: str) -> list[tuple[str, str]]:
    """(separator before, sentence) pairs; separators keep line breaks and indentation."""
    pairs, pos, sep = [], 0, PARAGRAPH
    for match in _SENTENCE_BREAK.finditer(paragraph):
        pairs.append((sep, paragraph[pos : match.start()]))
        sep = match.group().lstrip(" \t") if "\n" in match.group() else " "
        pos = match.end()
    pairs.append((sep, paragraph[pos:]))
    return [(s, t) for s, t in pairs if t.strip()]


class _SectionPacker:
    """Packs one section's units greedily into chunks, using cached per-unit token counts and
    verifying each chunk's real count once, so long documents cost O(n) tokenizer calls."""

    def __init__(self, header: str, count_tokens: Callable[[str], int], max_tokens: int, overlap: int):
        self.header = header
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.header_cost = count_tokens(_embed_text(header, ""))
        self.budget = max_tokens - self.header_cost
        self.overlap = min(overlap, self.budget // 2)
        self.fragment = min(self.budget, max(self.overlap, MIN_FRAGMENT_TOKENS))

    def cost(self, text: str) -> int:
        return self.count_tokens(_embed_text(self.header, text)) - self.header_cost

    def pack(self, text: str) -> Iterator[tuple[str, int]]:
        """Yield (body, token count of its embed_text) for each chunk of the section."""
        units = self.units(text)
        done = prev_start = 0
        while done < len(units):
            start = self._overlap_start(units, done, prev_start) if done else 0
            end = self._greedy_end(units, start, done)
            start, end, tokens = self._shrink_to_fit(units, start, done, end)
            yield _join(units[start:end]), tokens
            prev_start, done = start, end

    def units(self, text: str) -> list[_Unit]:
        units = []
        for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
            for sep, sentence in _sentences(paragraph.strip()):
                cost = self.cost(sentence)
                if cost <= self.budget:
                    units.append(_Unit(sep, sentence, cost))
                else:
                    pieces = self._split_words(sentence)
                    units.append(_Unit(sep, pieces[0].text, pieces[0].cost))
                    units.extend(pieces[1:])
        return units

    def _split_words(self, sentence: str) -> list[_Unit]:
        """Cut an over-long sentence into word runs of about `fragment` tokens; a word that alone
        exceeds the budget (a URL, base64) is cut into characters."""
        pieces = []
        for group, cost in self._pack_items(sentence.split(), " "):
            if cost <= self.budget:
                pieces.append(_Unit(" ", group, cost))
            else:
                parts = self._pack_items(list(group), "")
                pieces.append(_Unit(" ", *parts[0]))
                pieces.extend(_Unit("", text, cost) for text, cost in parts[1:])
        return pieces

    def _pack_items(self, items: list[str], joiner: str) -> list[tuple[str, int]]:
        """Greedy runs of items whose joined cost stays within `fragment` (at least one item each)."""
        runs, start = [], 0
        while start < len(items):
            costs: dict[int, int] = {}

            def fits(k: int, start: int = start, costs: dict[int, int] = costs) -> bool:
                costs[k] = self.cost(joiner.join(items[start : start + k]))
                return costs[k] <= self.fragment

            size = max(1, _longest_fitting_prefix(len(items) - start, fits))
            runs.append((joiner.join(items[start : start + size]), costs[size]))
            start += size
        return runs

    def _overlap_start(self, units: list[_Unit], done: int, prev_start: int) -> int:
        """Step back over whole units worth about `overlap` tokens, leaving room for the next unit
        and never reaching the previous chunk's first unit (which would repeat that chunk)."""
        limit = min(self.overlap, self.budget - units[done].cost)
        start, total = done, 0
        while start - 1 > prev_start and total + units[start - 1].cost <= limit:
            start -= 1
            total += units[start].cost
        return start

    def _greedy_end(self, units: list[_Unit], start: int, done: int) -> int:
        """Add units while the estimate fits; end at a paragraph break if that keeps half the chunk."""
        total = sum(u.cost for u in units[start : done + 1])
        end = done + 1
        while end < len(units) and total + units[end].cost <= self.budget:
            total += units[end].cost
            end += 1
        if end == len(units) or units[end].sep == PARAGRAPH:
            return end
        new_cost = sum(u.cost for u in units[done:end])
        for brk in range(end - 1, done, -1):
            if units[brk].sep == PARAGRAPH:
                if 2 * sum(u.cost for u in units[done:brk]) >= new_cost:
                    return brk
                break
        return end

    def _shrink_to_fit(self, units: list[_Unit], start: int, done: int, end: int) -> tuple[int, int, int]:
        """Token counts are not exactly additive; drop trailing units, then overlap, until the real
        count fits. A single unit always fits: its cost was measured with the header."""
        while True:
            tokens = self.count_tokens(_embed_text(self.header, _join(units[start:end])))
            if tokens <= self.max_tokens or end - start == 1:
                return start, end, tokens
            if end > done + 1:
                end -= 1
            else:
                start += 1
