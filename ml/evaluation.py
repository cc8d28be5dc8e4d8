"""Evaluation of answers against reference answers and their context, and the promotion gate.

Metrics take plain strings and an `embed` function (texts -> one vector per text, e.g.
`lambda texts: ml.embeddings.embed(model_name, texts)`), so they run without a database and
tests can pass any deterministic embedding.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Embed = Callable[[list[str]], np.ndarray]

_WORD = re.compile(r"\w+")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Function words that say nothing about whether a sentence is backed by the documents.
STOPWORDS = frozenset(
    "a an the and or but if then so of to in on at by for from with about as into over under is are "
    "was were be been being am do does did have has had it its this that these those there here i "
    "you he she we they me him her us them my your our their what which who whom when where why how "
    "not no yes can could will would should may might must shall also just only very too than more "
    "most some any all each both such own same other please thanks thank".split()
)
SUPPORTED_WORD_SHARE = 0.6
# A sentence in at least this share of the reference answers (and in three or more) is house
# phrasing, such as a sign-off: voice, not a claim, so groundedness leaves it out.
HOUSE_PHRASE_SHARE = 0.25


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters, digits, underscore; any script)."""
    return _WORD.findall(text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence by dynamic programming over one row, O(len(a) * len(b))."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0
        for j, other in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if token == other else max(row[j], row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lowercase words: 2PR/(P+R) with P, R = LCS / words; 0.0 if either is empty."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def semantic_similarity(embed: Embed, candidates: list[str], references: list[str]) -> list[float]:
    """Cosine similarity of each candidate with its reference (vectors are normalised here)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references.")
    if not candidates:
        return []
    vectors = _unit_rows(embed([*candidates, *references]))
    cand, ref = vectors[: len(candidates)], vectors[len(candidates) :]
    return [float(x) for x in np.sum(cand * ref, axis=1)]


def sentences(text: str) -> list[str]:
    """Sentences of `text` without citation markers like [1]; pieces with no word are dropped."""
    pieces = (_CITATION.sub("", piece).strip() for piece in _SENTENCE_END.split(text))
    return [piece for piece in pieces if words(piece)]


def _content_words(text: str) -> set[str]:
    return {word for word in words(text) if word not in STOPWORDS}


def _phrase_key(sentence: str) -> str:
    return " ".join(words(sentence))


def house_phrases(references: Sequence[str]) -> frozenset[str]:
    """Sentences that recur across the reference answers (a team's sign-off, a stock opening line),
    normalised to their lower-case words. Recurring in most answers, they carry no fact."""
    counts: dict[str, int] = {}
    for reference in references:
        for key in {_phrase_key(sentence) for sentence in sentences(reference)}:
            counts[key] = counts.get(key, 0) + 1
    needed = max(3, math.ceil(HOUSE_PHRASE_SHARE * len(references)))
    return frozenset(key for key, count in counts.items() if count >= needed)


def groundedness(
    answer: str,
    context: list[str],
    embed: Embed,
    threshold: float = 0.5,
    *,
    house: frozenset[str] = frozenset(),
) -> float:
    """Share of the answer's sentences that the context supports, in [0, 1].

    A sentence is supported when its best cosine against the context's chunks and their sentences
    is at least `threshold`, or when at least 60 % of its content words (stopwords and citation
    markers left out) occur in the context. Sentences in `house` (see house_phrases) are not
    claims and are left out. An answer with no other sentence (empty, or only house phrasing)
    scores 0.0, and so does any answer when the context is empty: nothing can back it.
    """
    claims = [sentence for sentence in sentences(answer) if _phrase_key(sentence) not in house]
    passages = [chunk for chunk in context if words(chunk)]
    passages += [sentence for chunk in passages for sentence in sentences(chunk)]
    if not claims or not passages:
        return 0.0
    vocabulary = set().union(*(words(chunk) for chunk in context))
    vectors = _unit_rows(embed([*claims, *passages]))
    best = (vectors[: len(claims)] @ vectors[len(claims) :].T).max(axis=1)
    supported = 0
    for claim, cosine in zip(claims, best, strict=True):
        content = _content_words(claim)
        present = len(content & vocabulary) / len(content) if content else 0.0
        supported += bool(cosine >= threshold or present >= SUPPORTED_WORD_SHARE)
    return supported / len(claims)


@dataclass(frozen=True)
class Scores:
    """Means over the held-out answers; `length` is the mean answer length in words."""

    similarity: float
    rouge_l: float
    groundedness: float
    length: float


def score_answers(
    answers: list[str], references: list[str], contexts: list[list[str]], embed: Embed
) -> Scores:
    """Mean similarity to the references, ROUGE-L, groundedness in each answer's context, length.

    Groundedness leaves out the references' house phrasing (house_phrases), for every system alike.
    """
    if not (len(answers) == len(references) == len(contexts)):
        raise ValueError(f"{len(answers)} answers, {len(references)} references, {len(contexts)} contexts.")
    if not answers:
        raise ValueError("No answers to score: hold out at least one pair.")
    similarity = semantic_similarity(embed, answers, references)
    rouge = [rouge_l(answer, reference) for answer, reference in zip(answers, references, strict=True)]
    house = house_phrases(references)
    grounded = [
        groundedness(answer, context, embed, house=house)
        for answer, context in zip(answers, contexts, strict=True)
    ]
    return Scores(
        similarity=float(np.mean(similarity)),
        rouge_l=float(np.mean(rouge)),
        groundedness=float(np.mean(grounded)),
        length=float(np.mean([len(words(answer)) for answer in answers])),
    )


def _rank(seed: int, item: int) -> str:
    return hashlib.sha256(f"{seed}:{item}".encode()).hexdigest()


def split_holdout(
    ids: Sequence[int],
    *,
    fraction: float = 0.2,
    minimum: int = 5,
    seed: int = 42,
    forced: Sequence[int] = (),
) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids), each sorted; a pure function of its arguments.

    Every id in `forced` that is among `ids` is held out. The held-out set is then filled up to
    ceil(fraction * n) ids, but at least `minimum` while that leaves half the ids for training
    (so at least min(minimum, n // 2)), and never all n. Ids are taken in the order of a seeded hash of each id,
    not of the list, so most ids keep their side as pairs are added between runs.
    """
    unique = sorted(set(ids))
    held = set(forced) & set(unique)
    target = max(math.ceil(fraction * len(unique)), min(minimum, len(unique) // 2))
    target = min(target, len(unique) - 1)  # the rule never takes every id from training
    candidates = sorted((item for item in unique if item not in held), key=lambda item: _rank(seed, item))
    held.update(candidates[: max(0, target - len(held))])
    return [item for item in unique if item not in held], sorted(held)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]


GATED_METRICS = ("similarity", "groundedness")


def gate(candidate: Scores, live: Scores | None, base: Scores, *, margin: float = 0.02) -> GateDecision:
    """Promote unless the candidate is worse than the live adapter (the base model when none is
    live) by more than `margin` on similarity or groundedness. One reason per gated metric."""
    reference, name = (live, "the live adapter") if live is not None else (base, "the base model")
    reasons: list[str] = []
    promote = True
    for metric in GATED_METRICS:
        ours, theirs = getattr(candidate, metric), getattr(reference, metric)
        difference = ours - theirs
        if difference < -margin - 1e-9:  # exactly at the margin passes, despite float rounding
            promote = False
            verdict = f"worse by {-difference:.3f}, more than the margin {margin:.3f}"
        elif difference < 0:
            verdict = f"worse by {-difference:.3f}, within the margin {margin:.3f}"
        else:
            verdict = f"better by {difference:.3f}" if difference > 0 else "equal"
        reasons.append(f"{metric} {ours:.3f} vs {theirs:.3f} for {name}: {verdict}")
    return GateDecision(promote=promote, reasons=reasons)
