"""Conversations: per-channel settings, every answer given, feedback on answers, API keys."""

from __future__ import annotations

from typing import Any, TypedDict

from django.db import models
from django.utils import timezone

from ml.prompting import PURGED, redact_context


class Mode(models.TextChoices):
    PROMPT = "prompt", "Prompt only (no retrieval, no adapter)"
    RAG = "rag", "Retrieval only"
    ADAPTER = "adapter", "Adapter only"
    BOTH = "both", "Retrieval and adapter"


class Platform(models.TextChoices):
    SLACK = "slack", "Slack"
    DISCORD = "discord", "Discord"
    WEB = "web", "Web"
    API = "api", "API"
    CLI = "cli", "Command line"


class ChannelSettings(models.Model):
    """How the bot behaves in one channel. Channels without a row use the global defaults."""

    platform = models.CharField(max_length=16, choices=Platform.choices)
    channel_id = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True, help_text="A label for people, e.g. #ops.")
    enabled = models.BooleanField(default=True)
    mode = models.CharField(
        max_length=16, choices=Mode.choices, blank=True, help_text="Empty: the global default (ANSWER_MODE)."
    )
    collections = models.ManyToManyField(
        "knowledge.Collection",
        blank=True,
        help_text="Search only these. Empty: every collection this channel may read.",
    )
    pinned = models.BooleanField(
        default=False,
        editable=False,
        help_text=(
            "Searches are limited to `collections` (set when collections are chosen). It stays on when a "
            "pinned collection is deleted, so the channel answers 'not covered' instead of reading everything."
        ),
    )
    persona = models.TextField(blank=True, help_text="System prompt for this channel. Empty: the default.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "channel settings"
        constraints = [
            models.UniqueConstraint(fields=["platform", "channel_id"], name="channel_settings_unique"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.platform}:{self.channel_id}"

    def pin_to_chosen_collections(self) -> None:
        """Pinned exactly when collections are chosen (after a change by hand, not a deletion)."""
        pinned = self.collections.exists()
        if pinned != self.pinned:
            self.pinned = pinned
            self.save(update_fields=["pinned", "updated_at"])


class SourceRef(TypedDict):
    """One document behind an answer (Answer.sources), as every platform renders it.

    Built only by answering.sources_for; `source` is the document's file name or URL.
    """

    number: int  # its [n] in the prompt
    cited: bool
    document: str  # title
    source: str
    heading: str
    score: float
    similarity: float | None


class Answer(models.Model):
    """Every reply the bot gave, with what it saw and how long each stage took."""

    platform = models.CharField(max_length=16, choices=Platform.choices)
    workspace = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=100, blank=True)
    thread = models.CharField(max_length=100, blank=True)
    message_id = models.CharField(max_length=100, blank=True, help_text="The platform's id of the reply.")
    asker = models.CharField(max_length=64, blank=True, help_text="Hashed user id.")
    question = models.TextField()
    text = models.TextField()
    mode = models.CharField(max_length=16, choices=Mode.choices)
    adapter = models.ForeignKey(
        "training.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="answers"
    )
    covered = models.BooleanField(
        default=True, help_text="False when the knowledge base had nothing relevant."
    )
    adapter_missing = models.BooleanField(
        default=False, help_text="The live adapter's files were missing: answered by the base model."
    )
    retrieved = models.JSONField(
        default=list, blank=True, help_text="Chunks given to the model: ids, scores and document versions."
    )
    sources = models.JSONField(default=list, blank=True, help_text="Cited documents, in citation order.")
    context = models.JSONField(
        default=list, blank=True, help_text="Chunk texts exactly as the model saw them."
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True, help_text="Milliseconds per stage.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["platform", "channel", "thread"], name="answer_thread")]

    def __str__(self) -> str:
        return self.question[:80]

    def redact_document(self, document_id: int, texts: frozenset[str]) -> None:
        """A purged document leaves no copy here: its context items and its sources are redacted.

        `retrieved`, `context` and the sources' [n] numbers share one order, the retrieval's.
        """
        positions = {i for i, hit in enumerate(self.retrieved) if hit.get("document_id") == document_id}
        self.context = redact_context(self.context, positions, texts)
        self.sources = [
            {**source, "document": PURGED, "source": "", "heading": ""}
            if source.get("number", 0) - 1 in positions
            else source
            for source in self.sources
        ]
        self.save(update_fields=["context", "sources"])


class Feedback(models.Model):
    class Category(models.TextChoices):
        """What was wrong with an answer, as a 👎's follow-up asks on every platform."""

        FACTS = "facts", "Wrong or outdated facts"
        MISSING = "missing", "Missing information"
        TONE = "tone", "Tone or format"
        LENGTH = "length", "Too long"
        OTHER = "other", "Other"

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="feedback")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    voter = models.CharField(max_length=64, help_text="Hashed user id.")
    value = models.SmallIntegerField(choices=[(1, "👍"), (-1, "👎")])
    category = models.CharField(
        max_length=16, choices=Category.choices, blank=True, help_text="What was wrong (a 👎's follow-up)."
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["answer", "voter"], name="one_vote_per_voter"),
            models.CheckConstraint(
                condition=models.Q(value__in=[1, -1]), name="feedback_value_plus_minus_one"
            ),
        ]

    def __str__(self) -> str:
        return f"{'+1' if self.value > 0 else '-1'} on answer {self.answer_id}"


class ApiKey(models.Model):
    """A key for the OpenAI-compatible API. Only a hash is stored; the key is shown once."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, help_text="First characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Question(models.Model):
    """A chat question written down before the platform is acknowledged, so none is lost.

    One row per platform event (`event_id` is unique per platform: a redelivery finds its row).
    It carries everything an answer worker needs to answer and reply, and moves
    pending → answering → answered (or failed, with the asker told). Redis only holds the job that
    points here; the sweeper (`manage.py sweep`) re-queues a row whose job died.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for an answer worker"
        ANSWERING = "answering", "Being answered"
        ANSWERED = "answered", "Answered"
        FAILED = "failed", "Failed (the asker was told)"

    platform = models.CharField(max_length=16, choices=Platform.choices)
    event_id = models.CharField(max_length=255, help_text="The platform's id of the event or command.")
    workspace = models.CharField(max_length=100, blank=True, help_text="Slack team or Discord guild.")
    channel = models.CharField(max_length=100)
    thread = models.CharField(max_length=100, blank=True, help_text="The thread answered in, if any.")
    starts_thread = models.BooleanField(
        default=False, help_text="The reply starts a thread of its own (Slack's /ask)."
    )
    asker = models.CharField(max_length=64, blank=True, help_text="Hashed user id.")
    text = models.TextField()
    note = models.TextField(blank=True, help_text="Told to the asker above the answer (a cut question).")
    asked = models.TextField(blank=True, help_text="A line quoting the question above the answer (/ask).")
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
    shared = models.BooleanField(
        default=False, help_text="The event said people outside the workspace read the channel."
    )
    placeholder = models.CharField(
        max_length=100, blank=True, help_text="Slack: the 'Thinking…' message that the answer replaces."
    )
    reply_to = models.CharField(max_length=100, blank=True, help_text="Discord: the message answered.")
    interaction = models.TextField(
        blank=True, help_text="Discord: 'application id:token' of a deferred /ask (valid 15 minutes)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    job_id = models.CharField(max_length=100, blank=True, help_text="The RQ job last queued for it.")
    error = models.TextField(blank=True)
    answer = models.ForeignKey(
        Answer, null=True, blank=True, on_delete=models.SET_NULL, related_name="questions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "event_id"], name="question_event_unique"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "answering", "answered", "failed"]),
                name="question_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="question_open")]

    def __str__(self) -> str:
        return f"{self.platform}:{self.event_id}"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.ANSWERING)

    def _move(self, source: list[str], **changes: Any) -> bool:
        """Compare-and-set in one UPDATE: True (and the instance updated) when the row was in `source`."""
        changes["updated_at"] = timezone.now()
        moved = Question.objects.filter(pk=self.pk, status__in=source).update(**changes)
        if moved:
            self.refresh_from_db()
        return bool(moved)

    def queued(self, job_id: str) -> None:
        """A job was queued for it; the row waits for a worker again."""
        self._move([self.Status.PENDING, self.Status.ANSWERING], status=self.Status.PENDING, job_id=job_id)

    def claim(self) -> bool:
        """An answer worker takes the question; False when it is answered, failed or taken."""
        return self._move(
            [self.Status.PENDING], status=self.Status.ANSWERING, attempts=models.F("attempts") + 1
        )

    def answered(self, answer: Answer) -> None:
        self._move([self.Status.ANSWERING], status=self.Status.ANSWERED, answer=answer, error="")

    def failed(self, error: str) -> None:
        """Given up on (the asker is told by the caller)."""
        self._move([self.Status.PENDING, self.Status.ANSWERING], status=self.Status.FAILED, error=error)

    def claim_placeholder(self, ts: str) -> str:
        """Record `ts` as the placeholder unless one is already set; the placeholder that won."""
        Question.objects.filter(pk=self.pk, placeholder="").update(placeholder=ts)
        self.placeholder = Question.objects.values_list("placeholder", flat=True).get(pk=self.pk)
        return self.placeholder
