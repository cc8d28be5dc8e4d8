"""Knowledge-base operations: register files as documents, index them, replace their chunks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Protocol

import django_rq
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone
from rq import Callback

from console.knowledge.models import EMBEDDING_DIMENSIONS, Chunk, Collection, Document, Source
from console.knowledge.signals import document_changed
from ml import embeddings
from ml.chunking import Chunk as ChunkPiece
from ml.chunking import chunk_document
from ml.parsing import SUPPORTED_EXTENSIONS, ParseError, ParseLimits, parse_document

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class Readable(Protocol):
    """An open file or an upload: what register_stream reads from."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Registration:
    """What happened to one incoming file: `changed` means it needs (re)indexing."""

    document: Document
    changed: bool


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB * 1024 * 1024)


def parse_limits() -> ParseLimits:
    return ParseLimits(
        max_unpacked_bytes=int(settings.MAX_UNPACKED_MB * 1024 * 1024),
        max_archive_entries=settings.MAX_ARCHIVE_ENTRIES,
        max_html_depth=settings.MAX_HTML_DEPTH,
    )


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
        if len(data) > max_upload_bytes():
            document.save(update_fields=["content_hash", "size_bytes", "updated_at"])
            document.fail(_too_large_message(len(data)))
            return Registration(document, changed=False)
        document.progress = 0
        document.status = Document.Status.PENDING
        document.error = ""
        old_file = document.file.name if document.file else ""
        document.file.save(Path(source).name or "document", ContentFile(data), save=False)
        document.save()
    if old_file and old_file != document.file.name:
        document.file.storage.delete(old_file)
    return Registration(document, changed=True)


def register_stream(
    collection: Collection, source: str, stream: Readable, size: int | None = None, *, title: str = ""
) -> Registration:
    """register_file for an upload or an open file, reading no more than MAX_UPLOAD_MB + 1 byte.

    A known `size` over the limit is refused without reading at all; an unknown one is read up to
    one byte past the limit, which is enough to know.
    """
    limit = max_upload_bytes()
    data = b"" if size is not None and size > limit else stream.read(limit + 1)
    if size is not None and size > limit or len(data) > limit:
        return register_failure(
            collection, source, _too_large_message(size if size is not None else len(data))
        )
    return register_file(collection, source, data, title=title)


def register_item(
    source: Source, key: str, data: bytes, *, filename: str, version: str, url: str = "", title: str = ""
) -> Registration:
    """register_file for an item a source brought in: found by (source, item key), its file named
    `filename` (whose suffix picks the parser), its URL and version marker kept. Same content as
    indexed: only the marker and URL are updated."""
    content_hash = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        document = _item_document(source, key)
        document.url, document.item_version = url[:2000], version[:500]
        if document.content_hash == content_hash and document.status == Document.Status.INDEXED:
            document.save(update_fields=["url", "item_version", "updated_at"])
            return Registration(document, changed=False)
        document.title = title[:500]
        document.content_hash = content_hash
        document.size_bytes = len(data)
        if len(data) > max_upload_bytes():
            document.save()
            document.fail(_too_large_message(len(data)))
            return Registration(document, changed=False)
        document.progress, document.status, document.error = 0, Document.Status.PENDING, ""
        old_file = document.file.name if document.file else ""
        document.file.save(PurePath(filename).name or "document.txt", ContentFile(data), save=False)
        document.save()
    if old_file and old_file != document.file.name:
        document.file.storage.delete(old_file)
    return Registration(document, changed=True)


def register_item_failure(source: Source, key: str, reason: str, *, url: str = "") -> Document:
    """An item that could not be fetched: its document is failed with the reason (kept chunks, if
    any, stay searchable) and is fetched again at the next sync."""
    with transaction.atomic():
        document = _item_document(source, key)
        if not document.pk:
            document.url = url[:2000]
            document.save()
        document.fail(reason)
    logger.warning("source %s item %s failed: %s", source.pk, key, reason)
    return document


def _item_document(source: Source, key: str) -> Document:
    """The locked document of a source's item, or a new unsaved one."""
    document = Document.objects.select_for_update().filter(source_ref=source, item_key=key).first()
    return document or Document(
        collection_id=source.collection_id,
        source_ref=source,
        item_key=key[:1000],
        source=f"{source.name}:{key}"[:1000],
    )


def register_failure(collection: Collection, source: str, reason: str) -> Registration:
    """A file that could not be taken in (too large, unreadable) becomes a failed document with the
    reason, so it shows in the admin beside the others; its previous chunks, if any, stay."""
    with transaction.atomic():
        document, _ = Document.objects.select_for_update().get_or_create(collection=collection, source=source)
        document.content_hash = ""  # whatever comes next is new content
        document.save(update_fields=["content_hash", "updated_at"])
        document.fail(reason)
    logger.warning("document %s (%s) refused: %s", document.pk, source, reason)
    return Registration(document, changed=False)


def _too_large_message(size: int) -> str:
    over = "over" if size > max_upload_bytes() + 1 else "more than"
    return (
        f"The file is {size / 1024 / 1024:.1f} MB, {over} the {settings.MAX_UPLOAD_MB:g} MB limit "
        "(MAX_UPLOAD_MB). Split it into smaller files or raise the limit."
    )


def batches(documents: Sequence[Document]) -> Iterator[list[Document]]:
    """Documents in groups indexed together: up to INGEST_BATCH_DOCUMENTS, and about
    INGEST_BATCH_MB of files, so one embedding pass covers many small documents."""
    limit = settings.INGEST_BATCH_MB * 1024 * 1024
    batch: list[Document] = []
    size = 0
    for document in documents:
        if batch and (len(batch) >= settings.INGEST_BATCH_DOCUMENTS or size + document.size_bytes > limit):
            yield batch
            batch, size = [], 0
        batch.append(document)
        size += document.size_bytes
    if batch:
        yield batch


def enqueue_index(documents: Document | Sequence[Document]) -> None:
    """Queue indexing on the `ingest` queue, a job per batch, once the surrounding transaction commits."""
    if isinstance(documents, Document):
        documents = [documents]
    groups = [[document.pk for document in batch] for batch in batches(documents)]

    def enqueue() -> None:
        queue = django_rq.get_queue("ingest")
        for ids in groups:
            queue.enqueue(
                "console.knowledge.jobs.index_documents",
                ids,
                job_timeout=settings.INGEST_JOB_TIMEOUT,
                description=f"Index document(s) {', '.join(map(str, ids))}",
                on_failure=Callback("console.knowledge.jobs.index_documents_failed"),
            )

    transaction.on_commit(enqueue)


def index_document(document_id: int, *, progress: Progress | None = None) -> Document:
    """Parse, chunk, embed and store one document; bad input marks it failed, never raises."""
    return index_documents([document_id], progress=progress)[0]


@dataclass
class _Parsed:
    document: Document
    title: str
    pieces: list[ChunkPiece]
    content_hash: str  # of the bytes parsed: stored only if the document still holds them


def index_documents(document_ids: Sequence[int], *, progress: Progress | None = None) -> list[Document]:
    """Index documents together: parse and chunk each, embed all their chunks in one pass, then
    replace each document's chunks in its own transaction. Returns the documents, in order.

    A document with bad input is marked failed with the reason and the others carry on.
    Idempotent: a document already indexed is left as it is (re-index sets it pending first).
    A document uploaded again while this ran is left pending for the newer upload's job: the
    chunks of the content read here are stored only if it is still the document's content, so
    racing uploads end with the newest one indexed, whichever job finishes first.
    """
    todo = list(
        Document.objects.filter(pk__in=document_ids).exclude(status=Document.Status.INDEXED).order_by("pk")
    )
    Document.objects.filter(pk__in=[document.pk for document in todo]).update(
        status=Document.Status.INDEXING, progress=0, error=""
    )
    parsed = [item for item in map(_parse_and_chunk, todo) if item]
    for item, vectors in _embedded(parsed, progress):
        try:
            replace_chunks(item.document.pk, item.title, item.pieces, vectors, content_hash=item.content_hash)
        except Exception as err:
            logger.exception("storing the chunks of document %s failed", item.document.pk)
            _fail(item.document, _unexpected(err))
    documents = Document.objects.in_bulk(document_ids)
    return [documents[pk] for pk in document_ids if pk in documents]


def _embedded(parsed: list[_Parsed], progress: Progress | None) -> Iterator[tuple[_Parsed, np.ndarray]]:
    """Each document with its chunks' vectors: one embedding pass for the batch, and if that
    fails, one pass per document, so a document that breaks the embedder fails alone."""
    reporter = _progress_reporter([item.document.pk for item in parsed], progress)
    try:
        vectors = embed_pieces([piece for item in parsed for piece in item.pieces], reporter)
    except Exception:
        if len(parsed) == 1:
            _fail(parsed[0].document, "Embedding its chunks failed; see the worker's log. Try re-indexing.")
            raise
        logger.exception("embedding a batch of %d documents failed; embedding them one by one", len(parsed))
        yield from _embedded_one_by_one(parsed)
        return
    start = 0
    for item in parsed:
        yield item, vectors[start : start + len(item.pieces)]
        start += len(item.pieces)


def _embedded_one_by_one(parsed: list[_Parsed]) -> Iterator[tuple[_Parsed, np.ndarray]]:
    for item in parsed:
        try:
            vectors = embed_pieces(item.pieces)
        except Exception as err:
            logger.exception("embedding document %s failed", item.document.pk)
            _fail(item.document, _unexpected(err))
            continue
        yield item, vectors


def _parse_and_chunk(document: Document) -> _Parsed | None:
    """One document's chunks, or None with the document marked failed."""
    try:
        data = _read(document)
        parsed = parse_document(
            _parse_name(document), data, max_bytes=max_upload_bytes(), limits=parse_limits()
        )
        pieces = chunk_document(
            parsed,
            embeddings.token_counter(settings.EMBEDDING_MODEL),
            max_tokens=embeddings.max_tokens(settings.EMBEDDING_MODEL),
            overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
        )
    except ParseError as err:
        _fail(document, str(err))
        return None
    except Exception as err:
        logger.exception("parsing document %s failed unexpectedly", document.pk)
        _fail(document, _unexpected(err))
        return None
    # A source's own title for an item (a wiki page's name) wins over one found in its text.
    title = (document.title if document.source_ref_id else "") or parsed.title
    return _Parsed(document, title, pieces, hashlib.sha256(data).hexdigest())


def _parse_name(document: Document) -> str:
    """The name whose suffix picks the parser: an upload's source, a synced item's stored file."""
    if document.source_ref_id and document.file.name:
        return PurePath(document.file.name).name
    return document.source


def _unexpected(err: Exception) -> str:
    return f"Indexing failed unexpectedly ({type(err).__name__}: {err}). Try re-indexing."


def _read(document: Document) -> bytes:
    if not document.file:
        raise ParseError("The document has no stored file; upload it again.")
    try:
        with document.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError as err:
        raise ParseError("The stored file is missing from DATA_DIR/media; upload it again.") from err


def mark_interrupted(document_ids: Sequence[int], cause: str) -> None:
    """A job that never finished (worker killed, timeout) leaves its documents failed, not stuck."""
    reason = f"Indexing was interrupted ({cause}); the previous chunks are unchanged. Re-index to retry."
    with transaction.atomic():
        stuck = Document.objects.select_for_update().filter(
            pk__in=document_ids, status__in=[Document.Status.PENDING, Document.Status.INDEXING]
        )
        for document in stuck:
            document.fail(reason)


def _fail(document: Document, reason: str) -> None:
    """Mark `document` failed unless it was uploaded again since it was read (`document` is the
    row as this job loaded it): the newer content has its own job."""
    if document.fail(reason, content_hash=document.content_hash):
        logger.warning("document %s failed: %s", document.pk, reason)
    else:
        logger.info("document %s changed while indexing; its new content has its own job", document.pk)


def _progress_reporter(document_ids: list[int], extra: Progress | None) -> Progress:
    """Embedding progress as each document's percent (documents of one batch move together)."""
    last = {"percent": -1}

    def report(done: int, total: int) -> None:
        percent = int(done * 99 / max(total, 1))
        if percent != last["percent"]:
            last["percent"] = percent
            Document.objects.filter(pk__in=document_ids).exclude(status=Document.Status.INDEXED).update(
                progress=percent
            )
        if extra:
            extra(done, total)

    return report


def embed_pieces(pieces: Sequence[ChunkPiece], progress: Progress | None = None) -> np.ndarray:
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


def replace_chunks(
    document_id: int,
    title: str,
    pieces: Sequence[ChunkPiece],
    vectors: np.ndarray,
    *,
    content_hash: str | None = None,
) -> bool:
    """Swap a document's chunks for new ones in one transaction and bump its version.

    Readers see the old chunks or the new ones, never a mix and never none. With `content_hash`
    (of the bytes the pieces came from), nothing is stored when the document has been given other
    content meanwhile (a newer upload or sync; its own job indexes it): False then.
    """
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document_id)
        if content_hash is not None and document.content_hash not in ("", content_hash):
            logger.info("document %s changed while indexing; its new content has its own job", document_id)
            return False
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
        title = (title or Path(document.source).stem)[:500]
        _fill_search_vectors(document.pk, title)
        document.indexed(title=title, chunk_count=len(pieces))
        document_changed.send(sender=Document, document_id=document.pk, version=document.version)
    return True


def _fill_search_vectors(document_id: int, title: str) -> None:
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
            [title, document_id],
        )


def mark_for_reindex(documents: Iterable[Document]) -> int:
    """Set documents pending and queue them; returns how many were queued."""
    documents = list(documents)
    with transaction.atomic():
        Document.objects.filter(pk__in=[d.pk for d in documents]).update(
            status=Document.Status.PENDING, progress=0
        )
        enqueue_index(documents)
    return len(documents)


def sweep_documents(older_than: timedelta) -> dict[str, int]:
    """Documents waiting longer than `older_than` with no live `ingest` job: pending ones are
    queued again (their job was never queued or was lost), ones left indexing are failed with a
    reason (their worker died without its failure callback). Counts by outcome."""
    from console.queues import live_job_args

    queued = {pk for args in live_job_args("ingest") for pk in (args[0] if args else [])}
    stale = Document.objects.filter(
        status__in=[Document.Status.PENDING, Document.Status.INDEXING],
        updated_at__lt=timezone.now() - older_than,
    ).exclude(pk__in=queued)
    pending = list(stale.filter(status=Document.Status.PENDING))
    interrupted = list(stale.filter(status=Document.Status.INDEXING).values_list("pk", flat=True))
    if pending:
        enqueue_index(pending)
        logger.warning("sweep: %d pending document(s) had no job; queued again", len(pending))
    if interrupted:
        mark_interrupted(interrupted, "its worker stopped without finishing")
    return {"requeued": len(pending), "failed": len(interrupted)}
