"""RQ entry points for the `ingest` queue. They take ids and re-read rows."""

from __future__ import annotations

from types import TracebackType

from redis import Redis
from rq.job import Job

from console.knowledge import indexing


def index_documents(document_ids: list[int]) -> dict[int, str]:
    """Index a batch of documents; returns each one's status."""
    return {document.pk: document.status for document in indexing.index_documents(document_ids)}


def index_documents_failed(
    job: Job,
    connection: Redis,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> None:
    """on_failure callback: a job that died or timed out leaves its documents failed, not 'indexing'."""
    indexing.mark_interrupted(job.args[0], f"{exc_type.__name__}: {exc_value}")
