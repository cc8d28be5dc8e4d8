"""A deleted document takes its stored file with it (connected in KnowledgeConfig.ready)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from console.knowledge.models import Document

logger = logging.getLogger(__name__)


@receiver(post_delete, sender=Document)
def delete_stored_file(sender: object, instance: Document, **kwargs: Any) -> None:
    """Remove the upload once the deletion commits (a rolled-back delete keeps its file)."""
    name = instance.file.name if instance.file else None
    if not name:
        return
    storage = instance.file.storage

    def delete() -> None:
        try:
            storage.delete(name)
        except OSError:
            logger.exception("document %s: could not delete its stored file %s", instance.pk, name)

    transaction.on_commit(delete)
