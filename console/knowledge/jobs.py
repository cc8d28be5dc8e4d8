"""RQ entry points for the `ingest` queue. They take ids and re-read rows."""

from __future__ import annotations

from types import TracebackType

from redis import Redis
from rq.job import Job

from console.knowledge import indexing, syncing
from console.workers import failure_reason


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
    indexing.mark_interrupted(job.args[0], failure_reason(exc_type, exc_value))


def sync_source(source_id: int, allow_prune: bool = False) -> dict[str, object]:
    """Sync one source (queued by syncing.enqueue_sync); returns the sync's status and counts."""
    sync = syncing.sync_source(source_id, allow_prune=allow_prune).sync
    counts = ("listed", "added", "updated", "unchanged", "deleted", "failed")
    return {"status": sync.status, "error": sync.error, **{name: getattr(sync, name) for name in counts}}


def sync_source_failed(
    job: Job,
    connection: Redis,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> None:
    """on_failure callback: a sync that died or timed out leaves its source failed, not 'syncing'."""
    syncing.mark_interrupted(job.args[0], exc_type.__name__)


def sync_due_sources() -> list[int]:
    """Queue the syncs whose schedule is due; `rq cron` runs this every minute (console/cron.py)."""
    return syncing.sync_due_sources()
