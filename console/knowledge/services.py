"""Knowledge-base operations: register files as documents, index them, replace their chunks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import django_rq
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone
from rq import Callback

from console.knowledge.models import EMBEDDING_DIMENSIONS, Chunk, Collection, Document
from console.knowledge.signals import document_changed
from ml import embeddings
from ml.chunking import Chunk as ChunkPiece
from ml.chunking import chunk_document
from ml.parsing import SUPPORTED_EXTENSIONS, ParseError, parse_document

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Registration:
    """What happened to one incoming file: `changed` means it needs (re)indexing."""

    document: Document
    changed: bool


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB * 1024 * 1024)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def register_file(collection: Collection, source: str, data: bytes, *, title: str = "") -> Registration:
    """Create or update the document for `source`; unchanged content (same hash) is left alone.

    A file over MAX_UPLOAD_MB is not stored: its document is marked failed with the reason.
    """
    content_hash = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        document, _ = Document.objects.select_for_update().get_or_create(
            collection=collection, source=source, defaults={"title": title}
        )
        if document.content_hash == content_hash and document.status == Document.Status.INDEXED:
            return Registration(document, changed=False)
        document.content_hash = content_hash
        document.size_bytes = len(data)
        document.progress = 0
        if len(data) > max_upload_bytes():
            document.status = Document.Status.FAILED
            document.error = _too_large_message(len(data))
            document.save()
            return Registration(document, changed=False)
        document.status = Document.Status.PENDING
        document.error = ""
        old_file = document.file.name if document.file else ""
        document.file.save(Path(source).name or "document", ContentFile(data), save=False)
        document.save()
    if old_file and old_file != document.file.name:
        document.file.storage.delete(old_file)
    return Registration(document, changed=True)


def _too_large_message(size: int) -> str:
    return (
        f"The file is {size / 1024 / 1024:.1f} MB, over the {settings.MAX_UPLOAD_MB:g} MB limit "
        "(MAX_UPLOAD_MB). Split it into smaller files or raise the limit."
    )


def enqueue_index(document: Document) -> None:
    """Queue indexing on the `ingest` queue once the surrounding transaction commits."""
    document_id = document.pk

    def enqueue() -> None:
        django_rq.get_queue("ingest").enqueue(
            "console.knowledge.jobs.index_document",
            document_id,
            job_timeout=settings.INGEST_JOB_TIMEOUT,
            description=f"Index document {document_id}",
            on_failure=Callback("console.knowledge.jobs.index_document_failed"),
        )

    transaction.on_commit(enqueue)


def index_document(document_id: int, *, progress: Progress | None = None) -> Document:
    """Parse, chunk, embed and store one document; bad input marks it failed, never raises.

    Idempotent: a document already indexed is left as it is (re-index sets it pending first).
    """
    document = Document.objects.get(pk=document_id)
    if document.status == Document.Status.INDEXED:
        return document
    Document.objects.filter(pk=document_id).update(status=Document.Status.INDEXING, progress=0, error="")
    try:
        data = _read(document)
        parsed = parse_document(document.source, data, max_bytes=max_upload_bytes())
        pieces = chunk_document(
            parsed,
            embeddings.token_counter(settings.EMBEDDING_MODEL),
            max_tokens=embeddings.max_tokens(settings.EMBEDDING_MODEL),
            overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
        )
        vectors = embed_pieces(pieces, _progress_reporter(document_id, progress))
        replace_chunks(document_id, parsed.title, pieces, vectors)
    except ParseError as err:
        _fail(document_id, str(err))
    except Exception as err:
        _fail(document_id, f"Indexing failed unexpectedly ({type(err).__name__}: {err}). Try re-indexing.")
        raise
    return Document.objects.get(pk=document_id)


def _read(document: Document) -> bytes:
    if not document.file:
        raise ParseError("The document has no stored file; upload it again.")
    try:
        with document.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError as err:
        raise ParseError("The stored file is missing from DATA_DIR/media; upload it again.") from err


def mark_interrupted(document_id: int, cause: str) -> None:
    """A job that never finished (worker killed, timeout) leaves its document failed, not stuck."""
    Document.objects.filter(
        pk=document_id, status__in=[Document.Status.PENDING, Document.Status.INDEXING]
    ).update(
        status=Document.Status.FAILED,
        progress=0,
        error=f"Indexing was interrupted ({cause}); the previous chunks are unchanged. Re-index to retry.",
    )


def _fail(document_id: int, reason: str) -> None:
    logger.warning("document %s failed: %s", document_id, reason)
    Document.objects.filter(pk=document_id).update(status=Document.Status.FAILED, error=reason, progress=0)


def _progress_reporter(document_id: int, extra: Progress | None) -> Progress:
    last = {"percent": -1}

    def report(done: int, total: int) -> None:
        percent = int(done * 99 / max(total, 1))
        if percent != last["percent"]:
            last["percent"] = percent
            Document.objects.filter(pk=document_id).update(progress=percent)
        if extra:
            extra(done, total)

    return report


def embed_pieces(pieces: Sequence[ChunkPiece], progress: Progress | None = None):
    vectors = embeddings.embed(
        settings.EMBEDDING_MODEL,
        [piece.embed_text for piece in pieces],
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        progress=progress,
    )
    if len(pieces) and vectors.shape[1] != EMBEDDING_DIMENSIONS:
        raise RuntimeError(
            f"EMBEDDING_MODEL gives {vectors.shape[1]}-dimensional vectors; the knowledge base "
            f"stores {EMBEDDING_DIMENSIONS}. Use a {EMBEDDING_DIMENSIONS}-dimensional model."
        )
    return vectors


def replace_chunks(document_id: int, title: str, pieces: Sequence[ChunkPiece], vectors) -> None:
    """Swap a document's chunks for new ones in one transaction and bump its version.

    Readers see the old chunks or the new ones, never a mix and never none.
    """
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        document.chunks.all().delete()
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                ordinal=piece.ordinal,
                heading=piece.heading[:1000],
                text=piece.text,
                token_count=piece.token_count,
                embedding=vector,
            )
            for piece, vector in zip(pieces, vectors, strict=True)
        )
        document.title = (title or Path(document.source).stem)[:500]
        _fill_search_vectors(document)
        document.version += 1
        document.chunk_count = len(pieces)
        document.status = Document.Status.INDEXED
        document.error = ""
        document.progress = 100
        document.indexed_at = timezone.now()
        document.save()
        document_changed.send(sender=Document, document_id=document.pk, version=document.version)


def _fill_search_vectors(document: Document) -> None:
    # Title and heading weigh more than body text in ts_rank; 'english' stems and drops stop words.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE knowledge_chunk
               SET search_vector = setweight(to_tsvector('english', %s), 'A')
                                || setweight(to_tsvector('english', heading), 'B')
                                || setweight(to_tsvector('english', text), 'D')
             WHERE document_id = %s
            """,
            [document.title, document.pk],
        )


def mark_for_reindex(documents) -> int:
    """Set documents pending and queue them; returns how many were queued."""
    count = 0
    with transaction.atomic():
        for document in documents:
            Document.objects.filter(pk=document.pk).update(status=Document.Status.PENDING, progress=0)
            enqueue_index(document)
            count += 1
    return count
