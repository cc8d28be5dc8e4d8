"""RQ entry points for the `ingest` queue. They take ids and re-read rows."""

from __future__ import annotations

from console.knowledge import services


def index_document(document_id: int) -> str:
    document = services.index_document(document_id)
    return document.status
