"""Conversations follow the knowledge base (connected in ConversationsConfig.ready).

Recorded answers lose a purged document's text. ChannelSettings.pinned follows its collections:
choosing collections pins a channel to them; removing them all by hand unpins it. Deleting a
collection removes its rows without m2m_changed, so a channel pinned to it stays pinned, with
nothing left to search: it answers "not covered" rather than widening to every collection.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from console.conversations.models import Answer, ChannelSettings
from console.knowledge.signals import document_purged


@receiver(document_purged)
def redact_purged_document(sender: object, document_id: int, texts: frozenset[str], **kwargs: Any) -> None:
    for answer in Answer.objects.filter(retrieved__contains=[{"document_id": document_id}]):
        answer.redact_document(document_id, texts)


@receiver(m2m_changed, sender=ChannelSettings.collections.through)
def collections_changed(
    sender: object, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    channel_ids = list(pk_set or []) if reverse else [instance.pk]
    for channel in ChannelSettings.objects.filter(pk__in=channel_ids):
        channel.pin_to_chosen_collections()
