"""The knowledge base: collections of documents, split into embedded chunks."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
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


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXING = "indexing", "Indexing"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=1000, help_text="The file name or URL it came from.")
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

    def fail(self, reason: str) -> None:
        """Indexing failed: record why, for the admin; the previous chunks, if any, stay searchable."""
        fields = {"status": self.Status.FAILED, "error": reason, "progress": 0}
        Document.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)


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
