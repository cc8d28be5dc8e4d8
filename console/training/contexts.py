"""The context each training example is shown: what the bot would retrieve for its question.

An adapter trained on pairs with no context learns that answers come from nowhere, and then
ignores the documents it is given in `both` mode. So a pair with no stored context is trained
with the chunks the production retriever returns for its question (console.conversations.
answering.retrieve: the same RETRIEVAL_TOP_K and threshold), re-computed for every run, since
documents change. Retrieval-augmented fine-tuning (RAFT, Zhang et al., 2024):

- the answering document is always there: if retrieval missed the pair's `document`, its best
  chunk for the question replaces the weakest retrieved one; the other chunks are distractors;
- for TRAIN_NOT_COVERED_SHARE of the examples the answering document is left out and the answer
  is "the documents do not cover this" in the team's voice (ml.voice), so the adapter learns to
  decline rather than invent when retrieval misses.

Only collections open to every channel are read: the adapter answers every channel, so a
restricted document's text must not be trained into it. Chat-harvested pairs keep the context
the model saw; pairs imported with a context column keep theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from pgvector.django import CosineDistance

from console.conversations.answering import ChannelConfig, context_of, retrieve
from console.knowledge.models import Chunk
from console.knowledge.search import SearchResult, embed_query
from console.training.models import ContextFrom, RunExample, TrainingPair
from ml import embeddings, evaluation
from ml.prompting import ContextItem, context_items
from ml.voice import VoiceProfile, not_covered_answer

# The retrieved chunk closest to a pair's answer is taken for the answering one (when the pair
# names no document) only this close: a weaker match says retrieval did not find it at all.
ANSWER_MATCH_SIMILARITY = 0.5
# Distractors to choose from when the answering document is left out: this many times top-k.
DISTRACTOR_POOL = 3

PUBLIC = ChannelConfig()  # every collection, subject to the scopes below
NO_SCOPES: list[str] = []  # no channel: only collections open to every channel


@dataclass(frozen=True)
class Plan:
    """How one run builds its examples' contexts."""

    run_name: str
    retrieve: bool  # TRAIN_CONTEXT == "retrieved"
    not_covered_share: float
    not_covered: str  # the team's "not covered" answer


def plan_for(run_name: str, answers: Sequence[str]) -> Plan:
    return Plan(
        run_name=run_name,
        retrieve=settings.TRAIN_CONTEXT == "retrieved",
        not_covered_share=settings.TRAIN_NOT_COVERED_SHARE,
        not_covered=not_covered_answer(VoiceProfile.of(answers)),
    )


def leaves_out(run_name: str, pair_id: int, share: float) -> bool:
    """Whether this run trains the pair without its answering document: a seeded draw, the same
    every time the run is built, different from run to run."""
    draw = int.from_bytes(hashlib.sha256(f"{run_name}:{pair_id}".encode()).digest()[:8], "big")
    return draw / 2**64 < share


def example_of(pair: TrainingPair, plan: Plan, *, heldout: bool) -> RunExample:
    """The pair as this run trains on (or, held out, is judged on) it, with its context recorded."""
    context: list[ContextItem] = pair.context if isinstance(pair.context, list) else []
    answer, origin = pair.answer, ContextFrom.PAIR
    if not context and plan.retrieve and not heldout:
        chunks = retrieved_chunks(pair)
        if chunks and leaves_out(plan.run_name, pair.pk, plan.not_covered_share):
            distractors = without_answer(pair, chunks)
            if distractors:
                chunks, answer, origin = distractors, plan.not_covered, ContextFrom.LEFT_OUT
        if origin == ContextFrom.PAIR:
            origin = ContextFrom.RETRIEVAL if chunks else ContextFrom.NONE
        context = context_items(context_of(chunks))
    return {
        "pair_id": pair.pk,
        "question": pair.question,
        "answer": answer,
        "context": context,
        "context_from": origin,
        "heldout": heldout,
    }


def retrieved_chunks(pair: TrainingPair) -> list[SearchResult]:
    """Top-k for the question, as the bot retrieves it, with a chunk of the pair's document in it."""
    chunks = retrieve(pair.question, PUBLIC, NO_SCOPES)
    named = named_documents(pair)
    if named and not any(c.document_id in named for c in chunks):
        best = best_chunk(named, pair.question)
        if best is not None:
            chunks = [*chunks[: settings.RETRIEVAL_TOP_K - 1], best]
    return chunks


def without_answer(pair: TrainingPair, chunks: list[SearchResult]) -> list[SearchResult]:
    """Top-k distractors: retrieval's results with the answering document taken out (empty when
    that document is unknown or nothing else was retrieved)."""
    answering = named_documents(pair) or answering_documents(pair.answer, chunks)
    if not answering:
        return []
    pool = retrieve(pair.question, PUBLIC, NO_SCOPES, k=settings.RETRIEVAL_TOP_K * DISTRACTOR_POOL)
    return [c for c in pool if c.document_id not in answering][: settings.RETRIEVAL_TOP_K]


def named_documents(pair: TrainingPair) -> set[int]:
    return {int(d["document_id"]) for d in pair.documents or [] if isinstance(d, dict) and "document_id" in d}


def answering_documents(answer: str, chunks: Sequence[SearchResult]) -> set[int]:
    """The document of the retrieved chunk most like the answer, if it is like it at all."""
    if not chunks:
        return set()
    similarity = evaluation.semantic_similarity(
        lambda texts: embeddings.embed(settings.EMBEDDING_MODEL, texts),
        [answer] * len(chunks),
        [c.text for c in chunks],
    )
    best = int(np.argmax(similarity))
    return {chunks[best].document_id} if similarity[best] >= ANSWER_MATCH_SIMILARITY else set()


def best_chunk(document_ids: set[int], question: str) -> SearchResult | None:
    """The chunk of these documents nearest the question, from collections open to every channel."""
    chunk = (
        Chunk.objects.filter(document_id__in=document_ids, document__collection__allowed_scopes=[])
        .select_related("document")
        .annotate(distance=CosineDistance("embedding", embed_query(question)))
        .order_by("distance")
        .first()
    )
    if chunk is None:
        return None
    document = chunk.document
    similarity = 1 - float(chunk.distance)
    return SearchResult(
        chunk_id=chunk.pk,
        document_id=document.pk,
        document=document.title,
        source=document.source,
        document_version=document.version,
        heading=chunk.heading,
        text=chunk.text,
        score=0.0,
        similarity=similarity,
        ordinal=chunk.ordinal,
        token_count=chunk.token_count,
    )
