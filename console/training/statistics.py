"""Statistics of the training set: how big the next run's dataset is, cheaply (no tokenizer)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from console.training.models import TrainingPair

WORDS_TO_TOKENS = 1.3  # English prose in a BPE tokenizer: about 1.3 tokens per word


@dataclass(frozen=True)
class DatasetSize:
    pairs: int  # approved, not stale, not evaluation-only: what the next run trains on
    tokens: int  # estimated from words; see WORDS_TO_TOKENS
    by_status: list[tuple[str, int]]
    stale: int
    eval_only: int


def _words(text: str) -> int:
    return len(text.split())


def dataset_size() -> DatasetSize:
    """Size of the next training set, estimated cheaply (no tokenizer): question, context and answer."""
    trainable = (
        TrainingPair.objects.trainable().filter(eval_only=False).values_list("question", "answer", "context")
    )
    pairs = words = 0
    for question, answer, context in trainable.iterator(chunk_size=1000):
        pairs += 1
        chunks = context if isinstance(context, list) else []
        words += _words(question) + _words(answer)
        words += sum(_words(str(chunk.get("text", ""))) for chunk in chunks if isinstance(chunk, dict))
    counts = dict(TrainingPair.objects.order_by().values_list("status").annotate(n=Count("id")))
    flags = TrainingPair.objects.aggregate(
        stale=Count("id", filter=Q(stale=True)), eval_only=Count("id", filter=Q(eval_only=True))
    )
    return DatasetSize(
        pairs=pairs,
        tokens=round(words * WORDS_TO_TOKENS),
        by_status=[(label, counts.get(value, 0)) for value, label in TrainingPair.Status.choices],
        stale=flags["stale"],
        eval_only=flags["eval_only"],
    )
