"""Turning answers and feedback into training pairs for curation.

Text is PII-scrubbed before a pair is stored; nothing trains until a curator approves it.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from console.conversations.models import Answer
from console.training.models import TrainingPair
from ml.pii import scrub
from ml.prompting import ContextItem


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
            )
        if pair is None:
            return None
        if votes == 0 and pair.status == TrainingPair.Status.CANDIDATE:
            pair.delete()
            return None
        TrainingPair.objects.filter(pk=pair.pk).update(votes=votes)
        pair.refresh_from_db()
        return pair


def add_correction(answer: Answer, better_answer: str, *, reason: str = "") -> TrainingPair:
    """A person's better answer to a question the bot got wrong: approved, with the original context."""
    if not better_answer.strip():
        raise ValueError("The better answer is empty.")
    return TrainingPair.objects.create(
        **scrubbed_fields(answer.question, better_answer.strip(), answer.context),
        source=TrainingPair.Source.CORRECTION,
        status=TrainingPair.Status.APPROVED,
        origin=answer,
        reason=scrub(reason.strip()).text,
        documents=_documents(answer),
    )


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
