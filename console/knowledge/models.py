"""The knowledge base: collections of documents, split into embedded chunks, and the sources
(folders, websites, repositories, wikis, chat) that keep documents in step with where they live."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 384


class Collection(models.Model):
    """A document set, readable by the channels listed in `allowed_scopes` (empty = everyone).

    A scope is `slack:<channel or team id>` or `discord:<channel or guild id>`; retrieval
    enforces it in SQL.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    allowed_scopes = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text=(
            "Channels that may read this collection, comma-separated, e.g. slack:C0123ABCD, "
            "slack:T0123 (a whole workspace), discord:987654321 (a channel or a guild). "
            "Empty: every channel."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


DEFAULT_SCHEDULE = "0 * * * *"  # hourly, on the hour


def validate_schedule(value: str) -> None:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValidationError(
            f"{value!r} is not a cron schedule: use five fields, minute hour day month weekday, "
            "e.g. '0 * * * *' (hourly) or '*/15 * * * *' (every 15 minutes)."
        )


class Source(models.Model):
    """Where a collection's documents come from, synced on a cron schedule.

    Options are validated by the kind's connector (console/knowledge/sources/); credentials are
    never stored here, only the name of the environment variable that holds them (`token_env`).
    """

    class Kind(models.TextChoices):
        FOLDER = "folder", "Folder on the server"
        WEBSITE = "website", "Website"
        GIT = "git", "Git repository"
        CONFLUENCE = "confluence", "Confluence"
        NOTION = "notion", "Notion"
        SLACK = "slack", "Slack channels"

    class Status(models.TextChoices):
        NEW = "new", "Not synced yet"
        SYNCING = "syncing", "Syncing"
        OK = "ok", "OK"
        FLAGGED = "flagged", "Flagged"  # synced, but something needs a person (nothing was pruned)
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="sources")
    options = models.JSONField(
        default=dict, blank=True, help_text='The kind\'s settings, e.g. {"path": "/srv/docs"}.'
    )
    schedule = models.CharField(
        max_length=100,
        default=DEFAULT_SCHEDULE,
        validators=[validate_schedule],
        help_text="When it syncs, as cron (UTC): '0 * * * *' hourly, '*/15 * * * *' every 15 minutes.",
    )
    enabled = models.BooleanField(default=True, help_text="Off: no scheduled syncs (Sync now still works).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    last_error = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When its running sync was queued.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("sync_source", "Can start a sync of a source now")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from console.knowledge.sources import CONNECTORS, OptionsError

        connector = CONNECTORS.get(self.kind)
        if connector is None:
            raise ValidationError({"kind": f"The {self.kind} connector is not installed on this server."})
        try:
            self.options = connector.validate(self.options or {})
        except OptionsError as err:
            raise ValidationError({"options": str(err)}) from err

    def next_run_after(self, moment: datetime) -> datetime:
        """The first time after `moment` its schedule says to sync."""
        return croniter(self.schedule, moment).get_next(datetime)

    def queued(self) -> None:
        """A sync was queued for it (the caller enqueues after commit): nothing else queues one."""
        now = timezone.now()
        self._set(status=self.Status.SYNCING, queued_at=now, next_sync_at=self.next_run_after(now))

    def finished(self, sync: Sync) -> None:
        """Its sync ended: the source takes the sync's outcome and error."""
        status = {
            Sync.Status.OK: self.Status.OK,
            Sync.Status.FLAGGED: self.Status.FLAGGED,
        }.get(Sync.Status(sync.status), self.Status.FAILED)
        now = timezone.now()
        # A sync run in-process (`sync --sync`, bootstrap) was never queued: schedule the next one here.
        next_sync = (
            self.next_sync_at if self.next_sync_at and self.next_sync_at > now else self.next_run_after(now)
        )
        self._set(
            status=status,
            last_error=sync.error,
            last_synced_at=sync.finished_at,
            queued_at=None,
            next_sync_at=next_sync,
        )

    def _set(self, **fields: Any) -> None:
        Source.objects.filter(pk=self.pk).update(**fields, updated_at=timezone.now())
        for name, value in fields.items():
            setattr(self, name, value)


class Sync(models.Model):
    """One run of a source's sync: what it found and did, for the history in the admin."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        FLAGGED = "flagged", "Flagged"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="syncs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    listed = models.PositiveIntegerField(default=0, help_text="Items the source holds now.")
    to_fetch = models.PositiveIntegerField(default=0, help_text="New and changed items to fetch and index.")
    done = models.PositiveIntegerField(default=0, help_text="Of those, handled so far.")
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why it failed or was flagged.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["source", "-started_at"], name="sync_source_started")]

    def __str__(self) -> str:
        return f"{self.source} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self) -> float | None:
        """Seconds it took (so far, while running)."""
        end = self.finished_at or (timezone.now() if self.status == self.Status.RUNNING else None)
        return None if end is None else (end - self.started_at).total_seconds()

    def progress(self, **counts: int) -> None:
        """Counts so far, written at once so the admin shows a running sync moving."""
        Sync.objects.filter(pk=self.pk).update(**counts)
        for name, value in counts.items():
            setattr(self, name, value)

    def finish(self, status: Sync.Status, error: str = "") -> None:
        self.status, self.error, self.finished_at = status, error, timezone.now()
        self.save()


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXING = "indexing", "Indexing"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=1000, help_text="The file name or URL it came from.")
    url = models.URLField(
        max_length=2000, blank=True, help_text="Where a person reads it; answers link here."
    )
    source_ref = models.ForeignKey(
        Source,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="documents",
        verbose_name="synced from",
        help_text="The source that brought it in and keeps it up to date (empty: uploaded or ingested).",
    )
    item_key = models.CharField(max_length=1000, blank=True, help_text="Its id within the source.")
    item_version = models.CharField(
        max_length=500, blank=True, help_text="The source's version marker of what is indexed."
    )
    file = models.FileField(upload_to="documents/%Y/%m/", max_length=500, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    version = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent of the current indexing run.")
    chunk_count = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    indexed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        permissions = [
            (
                "purge_document",
                "Can purge documents: delete them and redact their text from answers and pairs",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["collection", "source"], name="document_unique_source"),
            models.UniqueConstraint(
                fields=["source_ref", "item_key"],
                condition=models.Q(source_ref__isnull=False),
                name="document_unique_item",
            ),
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="document_progress_percent"),
        ]

    def __str__(self) -> str:
        return self.title or self.source

    def indexed(self, *, title: str, chunk_count: int) -> None:
        """Its new chunks are stored: a new version, searchable now, with no error left.

        Called inside the transaction that replaced the chunks, on the row it locked.
        """
        self.title = title
        self.version += 1
        self.chunk_count = chunk_count
        self.status = self.Status.INDEXED
        self.error = ""
        self.progress = 100
        self.indexed_at = timezone.now()
        self.save(
            update_fields=[
                "title",
                "version",
                "chunk_count",
                "status",
                "error",
                "progress",
                "indexed_at",
                "updated_at",
            ]
        )

    def fail(self, reason: str, *, content_hash: str | None = None) -> bool:
        """Indexing failed: record why, for the admin; the previous chunks, if any, stay searchable.

        With `content_hash`, only if the document still holds that content: a failure to index
        an older upload must not mark a newer one failed. False when nothing was marked.
        """
        fields = {"status": self.Status.FAILED, "error": reason, "progress": 0}
        rows = Document.objects.filter(pk=self.pk)
        if content_hash is not None:
            rows = rows.filter(content_hash=content_hash)
        if not rows.update(**fields):
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True


class Chunk(models.Model):
    """One embedded piece of a document. A document's chunks are replaced in one transaction."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=1000, blank=True)
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    search_vector = SearchVectorField(null=True)

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal"),
        ]
        indexes = [
            # pgvector's defaults (m 16, ef_construction 64) reached recall@10 0.86-0.90 at 100k
            # chunks of bench/retrieval.py's corpus; these reach 0.95+ at ef_search 100.
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=32,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(name="chunk_search_vector_gin", fields=["search_vector"]),
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.ordinal}"


class Lexeme(models.Model):
    """BM25's document frequency: how many chunks hold `lexeme`.

    Written only by the statement-level triggers on knowledge_chunk (migration 0003), in the
    transaction that changes the chunks, so it is exactly as current as the chunks a reader sees.
    """

    lexeme = models.TextField(primary_key=True)
    # Not a PositiveIntegerField: the triggers upsert signed deltas, and PostgreSQL checks CHECK
    # constraints on the row proposed for insertion before it sees the conflict.
    chunks = models.IntegerField()

    class Meta:
        db_table = "knowledge_lexeme"

    def __str__(self) -> str:
        return f"{self.lexeme} ({self.chunks})"


class ChunkTotals(models.Model):
    """BM25's corpus figures, one row: chunks with a search vector and their summed length.

    Kept by the same triggers as Lexeme. Every writer of chunks updates this row first, so
    writers queue here rather than deadlock on lexeme rows (see migration 0003).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    chunks = models.BigIntegerField(default=0)  # signed, as Lexeme.chunks is
    length = models.BigIntegerField(default=0)

    class Meta:
        db_table = "knowledge_chunk_totals"
        verbose_name_plural = "chunk totals"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="chunk_totals_single_row")]

    def __str__(self) -> str:
        return f"{self.chunks} chunks, {self.length} lexeme positions"
