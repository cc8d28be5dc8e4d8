"""Purging a document: delete it, its chunks and its stored file, and have every stored copy of its
text (answers' context and sources, training pairs' context) redacted in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from console.knowledge.models import Document
from console.knowledge.signals import document_purged

logger = logging.getLogger(__name__)


def purge(documents: Iterable[Document]) -> int:
    """Purge each document; returns how many. Deleting alone leaves its text in recorded answers."""
    count = 0
    with transaction.atomic():
        for document in documents:
            texts = frozenset(text.strip() for text in document.chunks.values_list("text", flat=True))
            document_purged.send(sender=Document, document_id=document.pk, texts=texts)
            logger.info("document %s (%s) purged", document.pk, document.source)
            document.delete()
            count += 1
    return count
