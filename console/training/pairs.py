"""Turning answers and feedback into training pairs for curation.

Text is PII-scrubbed before a pair is stored; nothing trains until a curator approves it, and
that holds for corrections too: a chat user's better answer waits as a candidate like a 👍.
Every pair records the access scope of its context (TrainingPair.trainable leaves restricted
context out) and is stale at birth when a document it cites changed since the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from console.conversations.models import Answer
from console.conversations.pseudonyms import hash_id
from console.knowledge.models import Document
from console.training.models import TrainingPair
from ml.pii import scrub
from ml.prompting import ContextItem

if TYPE_CHECKING:
    from console.knowledge.sources import Candidate


class CorrectionRefused(ValueError):
    """A better answer that is not taken; the message says why, written for the person who sent it."""


class ContextState(TypedDict):
    """Where a pair's context came from, as TrainingPair stores it."""

    collections: list[str]
    restricted: bool
    stale: bool


def scrubbed_fields(question: str, answer_text: str, context: list[ContextItem]) -> dict:
    """A pair's text fields with PII replaced, and whether anything was."""
    parts = [scrub(question), scrub(answer_text)]
    clean_context: list[ContextItem] = []
    for item in context:
        text = scrub(item.get("text", ""))
        parts.append(text)
        clean_context.append({**item, "text": text.text})  # other keys stay as stored
    return {
        "question": parts[0].text,
        "answer": parts[1].text,
        "context": clean_context,
        "pii_scrubbed": any(part.changed for part in parts),
    }


def _documents(answer: Answer) -> list[dict]:
    return [{"document_id": r["document_id"], "version": r["document_version"]} for r in answer.retrieved]


def context_state(answer: Answer) -> ContextState:
    """The collections behind an answer's chunks, whether any is restricted, whether any changed.

    A document gone since counts as restricted and stale: nothing proves every channel could read it.
    """
    cited = {r["document_id"]: r.get("document_version") for r in answer.retrieved}
    found = list(Document.objects.filter(pk__in=cited).select_related("collection"))
    return {
        "collections": sorted({d.collection.slug for d in found}),
        "restricted": len(found) < len(cited) or any(d.collection.allowed_scopes for d in found),
        "stale": len(found) < len(cited) or any(d.version != cited[d.pk] for d in found),
    }


def sync_feedback_pair(answer_id: int) -> TrainingPair | None:
    """Keep the 👍 candidate of an answer in step with its votes (distinct people who voted +1).

    The first 👍 creates a candidate; more raise its vote count; a candidate whose votes all go
    away is removed. Curated pairs (approved or rejected) keep their status.
    """
    with transaction.atomic():
        answer = Answer.objects.select_for_update().filter(pk=answer_id).first()
        if answer is None:  # deleted along with its feedback
            return None
        votes = answer.feedback.filter(value=1).count()
        pair = TrainingPair.objects.filter(origin=answer, source=TrainingPair.Source.FEEDBACK).first()
        if pair is None and votes and answer.covered:
            return TrainingPair.objects.create(
                **scrubbed_fields(answer.question, answer.text, answer.context),
                source=TrainingPair.Source.FEEDBACK,
                origin=answer,
                votes=votes,
                documents=_documents(answer),
                **context_state(answer),
            )
        if pair is None:
            return None
        if votes == 0 and pair.status == TrainingPair.Status.CANDIDATE:
            pair.delete()
            return None
        TrainingPair.objects.filter(pk=pair.pk).update(votes=votes)
        pair.refresh_from_db()
        return pair


def add_correction(
    answer: Answer, better_answer: str, *, platform: str, voter: str, reason: str = ""
) -> TrainingPair:
    """A person's better answer to a question the bot got wrong: a candidate, with the original context.

    One per answer and person (`voter` is the platform's user id; only its hash is stored): sending
    again replaces the text while it is a candidate. At most CORRECTIONS_PER_DAY new ones a person
    in 24 hours. Raises ValueError for an empty answer, CorrectionRefused beyond the limit or once
    a curator has reviewed it.
    """
    if not better_answer.strip():
        raise ValueError("The better answer is empty.")
    author = hash_id(platform, voter)
    if not author:
        raise ValueError("A correction needs the person who sent it.")
    fields = scrubbed_fields(answer.question, better_answer.strip(), answer.context)
    reason = scrub(reason.strip()).text
    with transaction.atomic():
        _one_at_a_time(author)
        mine = TrainingPair.objects.filter(
            origin=answer, source=TrainingPair.Source.CORRECTION, author=author
        )
        if pair := mine.first():
            if pair.status != TrainingPair.Status.CANDIDATE:
                raise CorrectionRefused(
                    "A curator has already reviewed your better answer to this question, so it stays as it is."
                )
            pair.revise(fields["answer"], reason, pii_scrubbed=fields["pii_scrubbed"])
            return pair
        if corrections_today(author) >= settings.CORRECTIONS_PER_DAY:
            raise CorrectionRefused(
                f"Thank you, but you have already sent {settings.CORRECTIONS_PER_DAY} better answers in the "
                "last 24 hours, the most one person can. Your vote is recorded; please send this one tomorrow."
            )
        return TrainingPair.objects.create(
            **fields,
            source=TrainingPair.Source.CORRECTION,
            origin=answer,
            author=author,
            reason=reason,
            documents=_documents(answer),
            **context_state(answer),
        )


def corrections_today(author: str) -> int:
    """Corrections this person (hashed id) sent in the last 24 hours."""
    since = timezone.now() - timedelta(days=1)
    return TrainingPair.objects.filter(
        source=TrainingPair.Source.CORRECTION, author=author, created_at__gte=since
    ).count()


def _one_at_a_time(author: str) -> None:
    """A transaction lock per person, so two corrections sent at once cannot both slip under the limit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"correction:{author}"])


def mark_stale(document_id: int, version: int | None) -> int:
    """Flag pairs whose context came from an older version of this document (or a deleted one)."""
    pairs = TrainingPair.objects.filter(documents__contains=[{"document_id": document_id}], stale=False)
    stale = [
        pair.pk
        for pair in pairs
        if any(d["document_id"] == document_id and d["version"] != version for d in pair.documents)
    ]
    return TrainingPair.objects.filter(pk__in=stale).update(stale=True)


def redact_document(document_id: int, texts: frozenset[str]) -> int:
    """Redact a purged document from every pair that cites it or carries one of its chunk texts."""
    carries = Q(documents__contains=[{"document_id": document_id}])
    for text in texts:
        carries |= Q(context__contains=[{"text": text}])
    redacted = 0
    for pair in TrainingPair.objects.select_for_update().filter(carries):
        pair.redact_document(document_id, texts)
        redacted += 1
    return redacted


def add_synced_candidates(document_id: int, candidates: Iterable[Candidate]) -> int:
    """Pairs a source nominated (the team's accepted answers) become candidates for a curator.

    Scrubbed like every pair; a question and answer already nominated are not added twice, so a
    thread fetched again after a new reply adds nothing. They carry no stored context (training
    retrieves it) and the access scope of the document's collection. Returns how many were added.
    """
    document = Document.objects.select_related("collection").filter(pk=document_id).first()
    if document is None:
        return 0
    added = 0
    for candidate in candidates:
        fields = scrubbed_fields(candidate.question, candidate.answer, [])
        if not fields["question"].strip() or not fields["answer"].strip():
            continue
        known = TrainingPair.objects.filter(
            source=TrainingPair.Source.SYNC, question=fields["question"], answer=fields["answer"]
        )
        if known.exists():
            continue
        TrainingPair.objects.create(
            **fields,
            source=TrainingPair.Source.SYNC,
            collections=[document.collection.slug],
            restricted=bool(document.collection.allowed_scopes),
        )
        added += 1
    return added
