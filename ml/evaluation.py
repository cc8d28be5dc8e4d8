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

from ml.voice import VoiceProfile, voice_score

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


# Facts a reader can check in a reference: amounts, numbers, times and versions ($55, 15, 10%,
# 09:00, v2.3), codes (TC-409, SEV1), channels, handles and addresses (#deploys, @oncall), acronyms
# (CAB) and names (capitalised words inside a sentence: Lisbon, WireGuard).
_TOKEN = re.compile(r"[#@$€£]?\w(?:[\w.:@/'’-]*\w)?%?")
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+|\n+)\W*$")


def key_facts(text: str, *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """The checkable facts in `text`, lower-cased, in order, each once; words in `ignore` (lower
    case: the house opening and sign-off, which are voice) are left out. Cheap and hard to fool: a
    paraphrase keeps them, an invented answer rarely has them."""
    facts: dict[str, None] = {}
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        lower = token.lower()
        if lower in ignore or lower in STOPWORDS:
            continue
        starts_sentence = bool(_SENTENCE_START.search(text[: match.start()]))
        if (
            any(ch.isdigit() for ch in token)
            or token[0] in "#@$€£"
            or (len(token) >= 2 and token.isupper())
            or (token[0].isupper() and not starts_sentence)
        ):
            facts.setdefault(lower, None)
    return list(facts)


def fact_share(answer: str, reference: str, *, ignore: frozenset[str] = frozenset()) -> float | None:
    """Share of the reference's key facts that the answer states too; None when it has none."""
    facts = key_facts(reference, ignore=ignore)
    if not facts:
        return None
    text = answer.lower()
    present = sum(bool(re.search(rf"(?<!\w){re.escape(fact)}(?!\w)", text)) for fact in facts)
    return present / len(facts)


@dataclass(frozen=True)
class AnswerScores:
    """One answer against its reference and the context it was given.

    facts: the mean of similarity, groundedness and key_facts (when the reference has any): what
    the answer says. voice: how close its form is to the references' (ml.voice). The gate weighs
    the two separately: retrieval is for facts, the adapter for voice.
    """

    similarity: float
    rouge_l: float
    groundedness: float
    key_facts: float | None
    facts: float
    voice: float
    length: int


@dataclass(frozen=True)
class Scores:
    """Means over the held-out answers; `length` is the mean answer length in words, `key_facts`
    the mean over the answers whose reference holds any (None when none does)."""

    similarity: float
    rouge_l: float
    groundedness: float
    length: float
    key_facts: float | None = None
    facts: float = 0.0
    voice: float = 0.0

    @classmethod
    def mean_of(cls, each: Sequence[AnswerScores]) -> Scores:
        if not each:
            raise ValueError("No answers to score: hold out at least one pair.")
        shares = [s.key_facts for s in each if s.key_facts is not None]
        return cls(
            similarity=float(np.mean([s.similarity for s in each])),
            rouge_l=float(np.mean([s.rouge_l for s in each])),
            groundedness=float(np.mean([s.groundedness for s in each])),
            length=float(np.mean([s.length for s in each])),
            key_facts=float(np.mean(shares)) if shares else None,
            facts=float(np.mean([s.facts for s in each])),
            voice=float(np.mean([s.voice for s in each])),
        )


def voice_words(profile: VoiceProfile) -> frozenset[str]:
    """The words of the house opening and sign-offs: voice, so never counted as facts."""
    return frozenset(words(" ".join([profile.opening, *profile.sign_offs])))


def score_each(
    answers: list[str],
    references: list[str],
    contexts: list[list[str]],
    embed: Embed,
    profile: VoiceProfile | None = None,
) -> list[AnswerScores]:
    """Every answer scored against its reference and context; `profile` defaults to the references' own.

    Groundedness leaves out the references' house phrasing (house_phrases), for every system alike.
    """
    if not (len(answers) == len(references) == len(contexts)):
        raise ValueError(f"{len(answers)} answers, {len(references)} references, {len(contexts)} contexts.")
    if not answers:
        raise ValueError("No answers to score: hold out at least one pair.")
    profile = profile or VoiceProfile.of(references)
    ignore = voice_words(profile)
    similarity = semantic_similarity(embed, answers, references)
    house = house_phrases(references)
    scored = []
    for answer, reference, context, cosine in zip(answers, references, contexts, similarity, strict=True):
        grounded = groundedness(answer, context, embed, house=house)
        share = fact_share(answer, reference, ignore=ignore)
        parts = [cosine, grounded] + ([share] if share is not None else [])
        scored.append(
            AnswerScores(
                similarity=cosine,
                rouge_l=rouge_l(answer, reference),
                groundedness=grounded,
                key_facts=share,
                facts=float(np.mean(parts)),
                voice=voice_score(answer, profile),
                length=len(words(answer)),
            )
        )
    return scored


def score_answers(
    answers: list[str],
    references: list[str],
    contexts: list[list[str]],
    embed: Embed,
    profile: VoiceProfile | None = None,
) -> Scores:
    """The means of score_each: similarity, ROUGE-L, groundedness, length, key facts, facts, voice."""
    return Scores.mean_of(score_each(answers, references, contexts, embed, profile))


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


def _compare(
    check: str, ours: float, theirs: float, name: str, *, margin: float = 0.0, gain: float | None = None
) -> tuple[bool, str]:
    """One check as (passed, reason). With `gain`: ours must beat theirs by at least gain; else ours
    may trail theirs by at most `margin` (exactly at either edge passes, despite float rounding)."""
    difference = ours - theirs
    if difference > 0:
        verdict = f"better by {difference:.3f}"
    elif difference < 0:
        verdict = f"worse by {-difference:.3f}"
    else:
        verdict = "equal"
    if gain is not None:
        passed = difference >= gain - 1e-9
        if not passed:
            verdict += f", not better by the {gain:.3f} needed"
    else:
        passed = difference >= -margin - 1e-9
        if difference < 0:
            verdict += f", {'within' if passed else 'more than'} the margin {margin:.3f}"
        elif not passed:  # a negative margin asks for a gain
            verdict += f", not better by the {-margin:.3f} the margin asks"
    return passed, f"{check} {ours:.3f} vs {theirs:.3f} for {name}: {verdict}"


def gate(
    candidate: Scores,
    live: Scores | None,
    base: Scores,
    *,
    margin: float = 0.02,
    voice_gain: float = 0.05,
) -> GateDecision:
    """Whether the candidate, answering with retrieval (`both`), may serve.

    `base` is the base model answering with the same retrieved documents (`rag`): the candidate
    must be at least as factual (within `margin`) and better in voice by `voice_gain`, or training
    bought nothing but risk. Against the live adapter, when there is one, it may trail by at most
    `margin` on either. One reason per check, each naming it; a refusal names the failing ones.
    """
    checks = [
        _compare("facts", candidate.facts, base.facts, "the base model with retrieval", margin=margin),
        _compare("voice", candidate.voice, base.voice, "the base model with retrieval", gain=voice_gain),
    ]
    if live is not None:
        checks += [
            _compare("facts", candidate.facts, live.facts, "the live adapter", margin=margin),
            _compare("voice", candidate.voice, live.voice, "the live adapter", margin=margin),
        ]
    return GateDecision(promote=all(passed for passed, _ in checks), reasons=[reason for _, reason in checks])
