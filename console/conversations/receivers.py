"""Recorded answers follow the knowledge base (connected in ConversationsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from console.conversations.models import Answer
from console.knowledge.signals import document_purged


@receiver(document_purged)
def redact_purged_document(sender: object, document_id: int, texts: frozenset[str], **kwargs: Any) -> None:
    for answer in Answer.objects.filter(retrieved__contains=[{"document_id": document_id}]):
        answer.redact_document(document_id, texts)
