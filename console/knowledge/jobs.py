"""RQ entry points for the `ingest` queue. They take ids and re-read rows."""

from __future__ import annotations

from console.knowledge import services


def index_document(document_id: int) -> str:
    document = services.index_document(document_id)
    return document.status


def index_document_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """on_failure callback: a job that died or timed out leaves its document failed, not 'indexing'."""
    services.mark_interrupted(job.args[0], f"{exc_type.__name__}: {exc_value}")
