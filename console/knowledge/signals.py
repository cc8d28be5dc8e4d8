"""Signals other apps listen to, so the knowledge base needs to know nothing about them."""

from django.dispatch import Signal

# Sent with document_id and version (None when the document was deleted) after its chunks change.
document_changed = Signal()

# Sent with document_id and texts (its chunks' texts, stripped) inside the transaction that purges
# it, before the row goes: receivers redact that text wherever they stored a copy.
document_purged = Signal()

# Sent with document_id, version and candidates (a tuple of sources.Candidate) after a document a
# source brought in is indexed, when the source nominated training pairs with it (a Slack thread
# whose answer was accepted): the training app turns them into candidate pairs.
candidates_found = Signal()
