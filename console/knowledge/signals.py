"""Signals other apps listen to, so the knowledge base needs to know nothing about them."""

from django.dispatch import Signal

# Sent with document_id and version (None when the document was deleted) after its chunks change.
document_changed = Signal()
