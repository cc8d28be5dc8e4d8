"""Syncing a source: list its items, index the new and changed ones, prune the ones that are gone.

Unchanged items (same version marker) are not fetched; changed ones go through the same pipeline as
uploads (console/knowledge/indexing.py: same parsing, chunking, atomic replace, versions). Nothing is
pruned when the listing failed, came back empty, or shrank by more than SYNC_PRUNE_MAX_SHARE: the
source is flagged and says why. One item failing fails its document alone; it is retried next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from rq import Callback

from console.knowledge import indexing
from console.knowledge.models import Document, Source, Sync
from console.knowledge.signals import candidates_found
from console.knowledge.sources import (
    CONNECTORS,
    Candidate,
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
)
from console.settings import source_secret

logger = logging.getLogger(__name__)

SECRET_OPTION_SUFFIX = "_env"
_LOCK_SPACE = 1313  # first key of the advisory locks syncs take (the second is the source id)  # an option naming the environment variable that holds a credential


@dataclass
class Plan:
    """What a sync will do, decided from the listing and the documents the source brought in before."""

    listed: int = 0
    new: list[Item] = field(default_factory=list)
    changed: list[tuple[Item, Document]] = field(default_factory=list)
    unchanged: list[Item] = field(default_factory=list)
    gone: list[Document] = field(default_factory=list)
    known: int = 0  # documents the source had


@dataclass
class Outcome:
    sync: Sync  # saved, or for a dry run an unsaved row with the planned counts
    plan: Plan


@dataclass
class _Pending:
    document: Document
    new: bool
    candidates: tuple[Candidate, ...]


def connector_for(source: Source) -> Connector:
    """The source's connector with its options validated and its credentials read from the environment."""
    cls = CONNECTORS.get(source.kind)
    if cls is None:
        raise SourceError(f"The {source.kind} connector is not installed on this worker.")
    try:
        options = cls.validate(source.options or {})
    except OptionsError as err:
        raise SourceError(
            f"Its options are invalid: {err} Fix them in the admin or with add_source."
        ) from err
    secrets = {}
    for name, variable in options.items():
        if name.endswith(SECRET_OPTION_SUFFIX) and variable:
            try:
                value = source_secret(str(variable))
            except ValueError as err:
                raise SourceError(str(err)) from err
            if not value:
                raise SourceError(
                    f"The environment variable {variable} (option {name}) is not set on the worker: "
                    "set it there and sync again."
                )
            secrets[str(variable)] = value
    return cls(options, secrets)


def plan(source: Source, items: list[Item]) -> Plan:
    """Sort the listing into new, changed (or of unknown version) and unchanged items, and the gone documents."""
    documents = {d.item_key: d for d in source.documents.all()}
    result = Plan(known=len(documents))
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            continue
        seen.add(item.key)
        document = documents.get(item.key)
        if document is None:
            result.new.append(item)
        elif (
            document.status == Document.Status.INDEXED
            and item.version
            and item.version == document.item_version
        ):
            result.unchanged.append(item)
        else:
            result.changed.append((item, document))
    result.listed = len(seen)
    result.gone = [document for key, document in documents.items() if key not in seen]
    return result


def sync_source(
    source_id: int,
    *,
    dry_run: bool = False,
    allow_prune: bool = False,
    report: Callable[[Sync], None] | None = None,
) -> Outcome:
    """Sync one source now, in this process; records a Sync row and the source's status.

    `dry_run` lists and plans but fetches, indexes and deletes nothing (and records nothing).
    `allow_prune` lets a person confirm a deletion larger than SYNC_PRUNE_MAX_SHARE.
    `report(sync)` is called once the listing is planned and after each item fetched (a bar).
    """
    source = Source.objects.select_related("collection").get(pk=source_id)
    if dry_run:
        return _run(source, dry_run=True, allow_prune=allow_prune)
    with _one_sync_at_a_time(source.pk) as mine:
        if not mine:
            busy = "Another sync of this source is running; this one did nothing."
            return Outcome(Sync(source=source, status=Sync.Status.FAILED, error=busy), Plan())
        return _run(source, dry_run=False, allow_prune=allow_prune, report=report)


@contextmanager
def _one_sync_at_a_time(source_id: int) -> Iterator[bool]:
    """A PostgreSQL advisory lock per source (session level, so it spans the sync's transactions):
    a `sync --sync` by hand and a queued job never work on one source at once."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_SPACE, source_id])
        mine = cursor.fetchone()[0]
    try:
        yield mine
    finally:
        if mine:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_SPACE, source_id])


def _run(
    source: Source, *, dry_run: bool, allow_prune: bool, report: Callable[[Sync], None] | None = None
) -> Outcome:
    sync = Sync(source=source)
    result = Plan()
    if not dry_run:
        sync.save()
        source._set(status=Source.Status.SYNCING)
    logger.info("source %s (%s): sync %s started", source.pk, source.name, sync.pk)
    try:
        connector = connector_for(source)
        result = plan(source, _listing(connector))
        if dry_run:
            _planned_counts(sync, result)
            return Outcome(sync, result)
        sync.progress(
            listed=result.listed,
            to_fetch=len(result.new) + len(result.changed),
            unchanged=len(result.unchanged),
        )
        _follow_collection(source)
        _take_in(source, connector, result, sync, report or (lambda sync: None))
        flagged = _prune(source, result, sync, allow_prune=allow_prune)
        failed = f"{sync.failed} item(s) failed: see the failed documents; they are retried at the next sync."
        problems = [text for text in (flagged, failed if sync.failed else "") if text]
        sync.finish(Sync.Status.FLAGGED if problems else Sync.Status.OK, " ".join(problems))
    except SourceError as err:
        _finish_failed(sync, str(err), dry_run)
    except Exception as err:
        logger.exception("source %s: sync failed unexpectedly", source.pk)
        _finish_failed(
            sync, f"The sync failed unexpectedly ({type(err).__name__}); see the worker's log.", dry_run
        )
    finally:
        if not dry_run:
            source.finished(sync)
            logger.info(
                "source %s: sync %s %s: +%d ~%d =%d -%d !%d %s",
                source.pk, sync.pk, sync.status, sync.added, sync.updated, sync.unchanged,
                sync.deleted, sync.failed, sync.error,
            )  # fmt: skip
    return Outcome(sync, result)


def _finish_failed(sync: Sync, reason: str, dry_run: bool) -> None:
    if dry_run:
        sync.status, sync.error = Sync.Status.FAILED, reason
    else:
        sync.finish(Sync.Status.FAILED, reason)


def _planned_counts(sync: Sync, result: Plan) -> None:
    sync.listed, sync.to_fetch = result.listed, len(result.new) + len(result.changed)
    sync.added, sync.updated = len(result.new), len(result.changed)
    sync.unchanged, sync.deleted = len(result.unchanged), len(result.gone)
    sync.status = Sync.Status.OK


def _listing(connector: Connector) -> list[Item]:
    try:
        return list(connector.items())
    except SourceError:
        raise
    except OSError as err:
        raise SourceError(
            f"Listing the source failed ({type(err).__name__}: {err.strerror or 'I/O error'})."
        ) from err


def _follow_collection(source: Source) -> None:
    """Its documents move with it when an admin points the source at another collection."""
    source.documents.exclude(collection_id=source.collection_id).update(collection_id=source.collection_id)


def _take_in(
    source: Source, connector: Connector, result: Plan, sync: Sync, report: Callable[[Sync], None]
) -> None:
    """Fetch and register new and changed items, indexing them a batch at a time."""
    work = [(item, None) for item in result.new] + list(result.changed)
    pending: list[_Pending] = []
    size = 0
    report(sync)
    for done, (item, document) in enumerate(work, 1):
        entry = _fetch_and_register(source, connector, item, document, sync)
        if entry:
            pending.append(entry)
            size += entry.document.size_bytes
        if len(pending) >= settings.INGEST_BATCH_DOCUMENTS or size >= settings.INGEST_BATCH_MB * 1024 * 1024:
            _index(pending, sync)
            pending, size = [], 0
        sync.progress(done=done)
        report(sync)
    _index(pending, sync)
    report(sync)


def _fetch_and_register(
    source: Source, connector: Connector, item: Item, document: Document | None, sync: Sync
) -> _Pending | None:
    previous = document.item_version if document else ""
    try:
        content = connector.fetch(item, previous_version=previous)
    except ItemError as err:
        _item_failed(source, item, str(err), sync)
        return None
    except Exception as err:
        logger.exception("source %s: fetching %s failed unexpectedly", source.pk, item.key)
        _item_failed(source, item, f"Fetching it failed unexpectedly ({type(err).__name__}).", sync)
        return None
    version = content.version or item.version
    if content.unchanged and document is not None:
        Document.objects.filter(pk=document.pk).update(item_version=version[:500], url=item.url[:2000])
        sync.progress(unchanged=sync.unchanged + 1)
        return None
    registration = _register(source, item, content, version)
    if registration.changed:
        return _Pending(registration.document, document is None, content.candidates)
    if registration.document.status == Document.Status.FAILED:
        sync.progress(failed=sync.failed + 1)
    else:
        sync.progress(unchanged=sync.unchanged + 1)
    return None


def _register(source: Source, item: Item, content: Content, version: str) -> indexing.Registration:
    return indexing.register_item(
        source,
        item.key,
        content.data,
        filename=content.filename,
        version=version,
        url=item.url,
        title=content.title or item.title,
    )


def _item_failed(source: Source, item: Item, reason: str, sync: Sync) -> None:
    indexing.register_item_failure(source, item.key, reason, url=item.url)
    sync.progress(failed=sync.failed + 1)


def _index(pending: list[_Pending], sync: Sync) -> None:
    if not pending:
        return
    indexed = {d.pk: d for d in indexing.index_documents([entry.document.pk for entry in pending])}
    added, updated, failed = sync.added, sync.updated, sync.failed
    for entry in pending:
        document = indexed.get(entry.document.pk)
        if document is None or document.status != Document.Status.INDEXED:
            failed += 1
            continue
        added, updated = (added + 1, updated) if entry.new else (added, updated + 1)
        if entry.candidates:
            candidates_found.send(
                sender=Source, document_id=document.pk, version=document.version, candidates=entry.candidates
            )
    sync.progress(added=added, updated=updated, failed=failed)


def prune_refusal(source: Source, result: Plan, *, allow_prune: bool) -> str:
    """Why the gone documents must stay (empty: they may go). `allow_prune` (a person confirmed it)
    lifts the SYNC_PRUNE_MAX_SHARE limit and the empty-listing rule, never a failed listing."""
    if not result.gone or allow_prune:
        return ""
    if result.listed == 0:
        return (
            f"The source listed no items, so its {result.known} document(s) were kept. If it really is "
            f"empty now: python manage.py sync {source.name} --sync --allow-prune"
        )
    share = len(result.gone) / max(result.known, 1)
    if share > settings.SYNC_PRUNE_MAX_SHARE:
        return (
            f"{len(result.gone)} of its {result.known} documents are no longer listed, more than "
            f"SYNC_PRUNE_MAX_SHARE ({settings.SYNC_PRUNE_MAX_SHARE:.0%}) allows, so none was deleted. "
            f"If they were removed on purpose: python manage.py sync {source.name} --sync --allow-prune"
        )
    return ""


def _prune(source: Source, result: Plan, sync: Sync, *, allow_prune: bool) -> str:
    """Delete documents whose items are gone (with their chunks, in one transaction), or say why not.

    Deleting a document flags the training pairs that cited it stale (console/training/receivers.py).
    """
    refusal = prune_refusal(source, result, allow_prune=allow_prune)
    if refusal:
        logger.warning("source %s: nothing pruned: %s", source.pk, refusal)
        return refusal
    if result.gone:
        with transaction.atomic():
            for document in result.gone:
                document.delete()
        logger.info("source %s: %d document(s) gone at the source deleted", source.pk, len(result.gone))
    sync.progress(deleted=len(result.gone))
    return ""


# --- queueing and scheduling -------------------------------------------------------------------


def enqueue_sync(source: Source, *, allow_prune: bool = False) -> bool:
    """Queue a sync of `source` on the `ingest` queue after commit; False if one is queued or running
    already (one sync per source at a time). A sync queued longer ago than SYNC_JOB_TIMEOUT is
    taken to be lost (Redis emptied) and queued again."""
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        lost = timezone.now() - timedelta(seconds=settings.SYNC_JOB_TIMEOUT + 600)
        if locked.status == Source.Status.SYNCING and locked.queued_at and locked.queued_at > lost:
            return False
        locked.queued()
        source_id = locked.pk

        def enqueue() -> None:
            django_rq.get_queue("ingest").enqueue(
                "console.knowledge.jobs.sync_source",
                source_id,
                allow_prune,
                job_timeout=settings.SYNC_JOB_TIMEOUT,
                description=f"Sync source {source_id} ({locked.name})",
                on_failure=Callback("console.knowledge.jobs.sync_source_failed"),
            )

        transaction.on_commit(enqueue)
    source.status, source.queued_at, source.next_sync_at = (
        locked.status,
        locked.queued_at,
        locked.next_sync_at,
    )
    return True


def due_sources() -> list[Source]:
    """Enabled sources whose schedule says to sync now (never synced ones at once)."""
    due = Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=timezone.now())
    return list(Source.objects.filter(due, enabled=True))


def sync_due_sources() -> list[int]:
    """Queue a sync of every due source; returns their ids. Run every minute by `rq cron`."""
    queued = [source.pk for source in due_sources() if enqueue_sync(source)]
    if queued:
        logger.info("queued scheduled syncs of sources %s", queued)
    return queued


def mark_interrupted(source_id: int, cause: str) -> None:
    """A sync job that never finished (worker killed, timeout) leaves its source failed, not 'syncing'."""
    reason = f"The sync was interrupted ({cause}); nothing was deleted. It runs again on schedule."
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return
    running = source.syncs.filter(status=Sync.Status.RUNNING).first()
    sync = running or Sync.objects.create(source=source)
    sync.finish(Sync.Status.FAILED, reason)
    source.finished(sync)
