"""Keep training pairs in step with feedback and documents (connected in TrainingConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from console.conversations.models import Feedback
from console.knowledge.models import Document
from console.knowledge.signals import candidates_found, document_changed, document_purged
from console.training import pairs
from console.training.models import TrainingRun


@receiver([post_save, post_delete], sender=Feedback)
def feedback_changed(sender: object, instance: Feedback, **kwargs: Any) -> None:
    answer_id = instance.answer_id
    transaction.on_commit(lambda: pairs.sync_feedback_pair(answer_id))


@receiver(document_changed)
def document_reindexed(sender: object, document_id: int, version: int, **kwargs: Any) -> None:
    pairs.mark_stale(document_id, version)


@receiver(document_purged)
def document_purged_from_pairs(
    sender: object, document_id: int, texts: frozenset[str], **kwargs: Any
) -> None:
    pairs.redact_document(document_id, texts)
    for run in TrainingRun.objects.exclude(examples=[], evaluation=[]):
        run.redact_texts(texts)


@receiver(post_delete, sender=Document)
def document_deleted(sender: object, instance: Document, **kwargs: Any) -> None:
    pairs.mark_stale(instance.pk, None)


@receiver(candidates_found)
def source_nominated_pairs(sender: object, document_id: int, candidates: tuple, **kwargs: Any) -> None:
    pairs.add_synced_candidates(document_id, candidates)
