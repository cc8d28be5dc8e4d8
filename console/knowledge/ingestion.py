"""Ingest files and folders from disk: walk, register, and index in-process or on the queue."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from console.knowledge import indexing
from console.knowledge.models import Collection, Document


@dataclass
class IngestSummary:
    indexed: list[Document] = field(default_factory=list)
    skipped: list[Document] = field(default_factory=list)
    failed: list[Document] = field(default_factory=list)
    queued: list[Document] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # unsupported extensions met inside folders


def iter_files(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """(file, source) pairs: a file's source is its name, a folder's files are relative to it."""
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if not any(part.startswith(".") for part in relative.parts):
                    yield file, relative.as_posix()
        elif path.is_file():
            yield path, path.name
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")


def register_paths(collection: Collection, paths: list[Path], summary: IngestSummary) -> list[Document]:
    """Register every file; returns documents that need indexing. Unchanged ones are skipped."""
    pending = []
    for file, source in iter_files(paths):
        explicit = file in paths
        if not indexing.is_supported(file) and not explicit:
            summary.ignored[file.suffix.lower() or "(no extension)"] += 1
            continue
        registration = _register(collection, file, source)
        document = registration.document
        if registration.changed:
            pending.append(document)
        elif document.status == Document.Status.FAILED:
            summary.failed.append(document)
        else:
            summary.skipped.append(document)
    return pending


def _register(collection: Collection, file: Path, source: str) -> indexing.Registration:
    """One file registered, reading no more than the upload limit; an unreadable file fails alone."""
    try:
        with file.open("rb") as handle:
            return indexing.register_stream(collection, source, handle, file.stat().st_size)
    except OSError as err:
        return indexing.register_failure(
            collection,
            source,
            f"The file could not be read ({err.strerror or err}): check it and ingest again.",
        )


def index_now(
    documents: list[Document],
    summary: IngestSummary,
    on_progress: Callable[[Document], None],
    on_embedding: indexing.Progress | None = None,
) -> None:
    """Index in this process, a batch at a time (one embedding pass per batch).

    on_progress(document) follows documents as they finish; on_embedding(done, total) the chunks
    of the batch being embedded, so a large batch shows movement before its documents finish.
    """
    for batch in indexing.batches(documents):
        ids = [document.pk for document in batch]
        for result in indexing.index_documents(ids, progress=on_embedding):
            (summary.indexed if result.status == Document.Status.INDEXED else summary.failed).append(result)
            on_progress(result)


def enqueue(documents: list[Document], summary: IngestSummary) -> None:
    with transaction.atomic():
        indexing.enqueue_index(documents)
    summary.queued.extend(documents)


def wait_for(
    documents: list[Document],
    summary: IngestSummary,
    on_progress: Callable[[Document], None],
    *,
    poll: float = 0.5,
) -> None:
    """Follow queued documents until each is indexed or failed."""
    waiting = {document.pk for document in documents}
    while waiting:
        for document in Document.objects.filter(pk__in=waiting):
            if document.status in (Document.Status.INDEXED, Document.Status.FAILED):
                waiting.discard(document.pk)
                (summary.indexed if document.status == Document.Status.INDEXED else summary.failed).append(
                    document
                )
                on_progress(document)
        if waiting:
            time.sleep(poll)
