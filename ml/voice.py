"""A team's voice, read from its reference answers: how they open, how they sign off, how long they run.

The evaluation gate scores how close an answer's form is to the references (`voice_score`), and
training writes "the documents do not cover this" in the same form (`not_covered_answer`), so an
adapter learns to decline in the team's voice instead of inventing. Plain functions of strings:
no model, no database.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# An opening shared by at least this share of the references is the house opening ("Short answer:").
OPENING_SHARE = 0.5
# A line shared by at least this share of the references (and by three or more) is house phrasing.
SIGN_OFF_SHARE = 0.25
OPENING_WORDS = 2

NOT_COVERED_BODY = "The documents I was given don't cover this, so I won't guess."
NOT_COVERED_DETAIL = "Ask a teammate who knows, and add the answer to the knowledge base."


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _opening(text: str) -> str:
    """The first words of the first line, as written (punctuation kept), e.g. "Short answer:"."""
    lines = _lines(text)
    return " ".join(lines[0].split()[:OPENING_WORDS]) if lines else ""


@dataclass(frozen=True)
class VoiceProfile:
    """The form the references share. Empty fields mean the references do not share that trait."""

    opening: str = ""  # e.g. "Short answer:"
    sign_offs: tuple[str, ...] = ()  # whole lines most references end with, e.g. "— fair winds, Tidewell Ops"
    lines: int = 0  # the usual number of non-empty lines
    min_words: int = 0  # the references' length band (10th to 90th percentile, in words)
    max_words: int = 0

    @classmethod
    def of(cls, references: Sequence[str]) -> VoiceProfile:
        references = [r for r in references if r.strip()]
        if not references:
            return cls()
        openings = Counter(_opening(r) for r in references)
        opening, count = openings.most_common(1)[0]
        last_lines = Counter(_lines(r)[-1] for r in references)
        needed = max(3, math.ceil(SIGN_OFF_SHARE * len(references)))
        sign_offs = tuple(line for line, n in last_lines.most_common() if n >= needed)
        lengths = sorted(len(_words(r)) for r in references)
        return cls(
            opening=opening if count >= OPENING_SHARE * len(references) and count >= 2 else "",
            sign_offs=sign_offs,
            lines=round(statistics.median(len(_lines(r)) for r in references)),
            min_words=lengths[int(0.1 * (len(lengths) - 1))],
            max_words=lengths[math.ceil(0.9 * (len(lengths) - 1))],
        )

    def checks(self, answer: str) -> list[bool]:
        """One verdict per trait the references share: opening, sign-off, line count, length."""
        lines = _lines(answer)
        verdicts = []
        if self.opening:
            verdicts.append(_opening(answer).lower() == self.opening.lower())
        if self.sign_offs:
            verdicts.append(bool(lines) and lines[-1] in self.sign_offs)
        if self.lines:
            verdicts.append(len(lines) == self.lines)
        if self.max_words:
            verdicts.append(self.min_words <= len(_words(answer)) <= self.max_words)
        return verdicts


def voice_score(answer: str, profile: VoiceProfile) -> float:
    """Share of the references' shared traits the answer has, in [0, 1]; 0.0 with no trait known."""
    verdicts = profile.checks(answer)
    return sum(verdicts) / len(verdicts) if verdicts else 0.0


def not_covered_answer(profile: VoiceProfile) -> str:
    """ "The documents do not cover this", written in the references' form.

    The house opening leads the first line, the detail fills the lines between, the house sign-off
    closes: for the demo, three lines that open with "Short answer:" and end "— fair winds, …".
    """
    first = f"{profile.opening} {NOT_COVERED_BODY}" if profile.opening else NOT_COVERED_BODY
    lines = [first]
    if profile.lines - (1 if profile.sign_offs else 0) >= 2:
        lines.append(NOT_COVERED_DETAIL)
    if profile.sign_offs:
        lines.append(profile.sign_offs[0])
    return "\n".join(lines)
