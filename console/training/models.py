"""Adapters: each TrainingRun may produce one LoRA adapter; at most one run is active."""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from ml.prompting import ContextItem, redact_context


class ContextFrom(models.TextChoices):
    """Where a training example's context came from (console/training/contexts.py)."""

    PAIR = "pair", "stored with the pair"
    RETRIEVAL = "retrieval", "retrieved for the question"
    LEFT_OUT = "left out", "retrieved, answering document left out (answer: not covered)"
    NONE = "none", "nothing retrieved"


class RunExample(TypedDict):
    """One pair as a run trained on (or held it out) it: the texts at the time, and its context."""

    pair_id: int
    question: str
    answer: str
    context: list[ContextItem]
    context_from: str  # a ContextFrom value
    heldout: bool


class TrainingRun(models.Model):
    """A LoRA adapter version. The learning loop fills in training; answering reads `active`."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        EVALUATING = "evaluating", "Evaluating"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    name = models.SlugField(max_length=64, unique=True, help_text="The adapter's name when it is served.")
    base_model = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    adapter_path = models.CharField(
        max_length=1000, blank=True, help_text="Folder with adapter_model.safetensors."
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    system_prompt = models.TextField(
        blank=True,
        help_text="The system prompt it trained and was evaluated with (empty on runs from before it was recorded).",
    )
    metrics = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(
        default=list,
        blank=True,
        help_text="Per held-out question: reference, base, live and candidate answers.",
    )
    examples = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "The pairs as the run found them when it started (approved and not stale then), each "
            "with the context it trained on: a snapshot, so a later edit or rejection changes nothing."
        ),
    )
    dataset_hash = models.CharField(max_length=64, blank=True)
    pair_ids = models.JSONField(default=list, blank=True, help_text="Pairs trained on.")
    heldout_ids = models.JSONField(default=list, blank=True, help_text="Pairs held out for evaluation.")
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent of training steps done.")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    current_loss = models.FloatField(null=True, blank=True)
    evaluated = models.PositiveIntegerField(default=0, help_text="Held-out questions answered so far.")
    tokens_per_second = models.FloatField(null=True, blank=True)
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="one_active_adapter"
            ),
        ]
        permissions = [
            ("start_training", "Can start (or retry) a training run"),
            ("promote_adapter", "Can promote or roll back the live adapter"),
            ("read_evaluation", "Can read a run's side-by-side evaluation"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def heldout_count(self) -> int:
        """Held-out questions it answers: those of its snapshot once taken, else those it froze."""
        if self.examples:
            return sum(1 for e in self.examples if e["heldout"])
        return len(self.heldout_ids)

    def start(self) -> None:
        """The `train` job picked the run up: running, from now, with no error left from a try before."""
        self._set(status=self.Status.RUNNING, started_at=timezone.now(), error="")

    def trained(self, adapter_path: str, tokens_per_second: float) -> None:
        """The adapter is written; the held-out questions are answered next (counted in `evaluated`)."""
        self._set(
            status=self.Status.EVALUATING,
            adapter_path=adapter_path,
            tokens_per_second=tokens_per_second,
            progress=100,
            evaluated=0,
        )

    def succeed(self) -> None:
        """Trained and evaluated; whether it serves is the gate's call (adapters.promote)."""
        self._set(status=self.Status.SUCCEEDED, finished_at=timezone.now())

    def fail(self, reason: str) -> bool:
        """Record why the run failed and take it off the air; a succeeded run is never failed.

        Returns whether the run was marked. The live adapter, if another, is untouched.
        """
        fields = {
            "status": self.Status.FAILED,
            "error": reason,
            "finished_at": timezone.now(),
            "active": False,
        }
        marked = TrainingRun.objects.filter(pk=self.pk).exclude(status=self.Status.SUCCEEDED).update(**fields)
        if marked:
            self._remember(fields)
        return bool(marked)

    def record_examples(self, examples: list[RunExample]) -> None:
        """The run's snapshot: the pairs as they were when it started, with their contexts; the
        dataset hash is then the snapshot's, so two runs on the same data and documents match."""
        digest = hashlib.sha256(json.dumps(examples, sort_keys=True).encode()).hexdigest()
        self._set(examples=examples, dataset_hash=digest)

    def redact_texts(self, texts: frozenset[str]) -> bool:
        """A purged document's chunks leave the contexts this run recorded (its training
        snapshot and the documents its held-out questions retrieved). Returns whether any did."""
        examples = [{**e, "context": redact_context(e["context"], set(), texts)} for e in self.examples]
        evaluation = [
            {**row, "context": redact_context(row["context"], set(), texts)} if "context" in row else row
            for row in self.evaluation
        ]
        if examples == self.examples and evaluation == self.evaluation:
            return False
        self._set(examples=examples, evaluation=evaluation)
        return True

    def requeue(self) -> None:
        """Queued again after a failure (the caller enqueues the job); training resumes from its checkpoint."""
        self._set(status=self.Status.QUEUED, error="", progress=0)

    def _set(self, **fields: Any) -> None:
        """One UPDATE of these columns (nothing else is written), mirrored on this instance."""
        TrainingRun.objects.filter(pk=self.pk).update(**fields)
        self._remember(fields)

    def _remember(self, fields: dict) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


class TrainingPairQuerySet(models.QuerySet):
    def trainable(self) -> TrainingPairQuerySet:
        """Pairs the next run may train on: approved, not stale, and with context every channel may
        read, unless a curator with `include_restricted_pair` included that pair on purpose (the
        adapter answers every channel, so a channel's private facts must not reach it by default)."""
        return self.filter(status=TrainingPair.Status.APPROVED, stale=False).filter(
            models.Q(restricted=False) | models.Q(include_restricted=True)
        )


class TrainingPair(models.Model):
    """A question, the context the model saw, and a good answer: one example for the next adapter.

    Nothing trains until a curator approves it.
    """

    class Source(models.TextChoices):
        FEEDBACK = "feedback", "👍 feedback"
        CORRECTION = "correction", "Correction"
        MANUAL = "manual", "Manual"
        IMPORT = "import", "Import"
        SYNC = "sync", "Source sync"  # e.g. a Slack thread whose answer was accepted with ✅

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    question = models.TextField()
    context = models.JSONField(default=list, blank=True, help_text="Chunks as the model saw them.")
    answer = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    origin = models.ForeignKey(
        "conversations.Answer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_pairs",
    )
    votes = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="What was wrong with the original answer.")
    documents = models.JSONField(
        default=list, blank=True, help_text="Documents the context came from: [{document_id, version}]."
    )
    stale = models.BooleanField(default=False, help_text="A document in its context changed since.")
    pii_scrubbed = models.BooleanField(default=False, help_text="Personal data or secrets were replaced.")
    eval_only = models.BooleanField(default=False, help_text="Held out for evaluation, never trained on.")
    author = models.CharField(
        max_length=64, blank=True, help_text="Hashed id of the person who wrote a correction."
    )
    collections = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Collections (slugs) the context's chunks came from.",
    )
    restricted = models.BooleanField(
        default=False,
        help_text="Some of its context came from a collection only some channels may read.",
    )
    include_restricted = models.BooleanField(
        default=False,
        help_text="A curator allowed to include restricted context chose to train on this pair.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TrainingPairQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin", "source"],
                condition=models.Q(source="feedback"),
                name="one_feedback_pair_per_answer",
            ),
            models.UniqueConstraint(
                fields=["origin", "author"],
                condition=models.Q(source="correction") & ~models.Q(author=""),
                name="one_correction_per_answer_and_person",
            ),
        ]
        permissions = [
            ("include_restricted_pair", "Can include a pair with restricted context in training"),
        ]

    def __str__(self) -> str:
        return self.question[:80]

    def redact_document(self, document_id: int, texts: frozenset[str]) -> None:
        """A purged document's text leaves this pair's context (it stays flagged stale).

        Feedback pairs list their documents in their context's order; when the lengths differ
        (imports), every item of a pair citing the document goes, as does any item with its text.
        """
        cited = [entry.get("document_id") == document_id for entry in self.documents]
        if len(cited) == len(self.context):
            positions = {index for index, hit in enumerate(cited) if hit}
        else:
            positions = set(range(len(self.context))) if any(cited) else set()
        self.context = redact_context(self.context, positions, texts)
        self.save(update_fields=["context", "updated_at"])

    def revise(self, answer: str, reason: str, *, pii_scrubbed: bool) -> None:
        """Its author sent a new better answer before a curator looked: the candidate takes it."""
        self.answer, self.reason, self.pii_scrubbed = answer, reason, self.pii_scrubbed or pii_scrubbed
        self.save(update_fields=["answer", "reason", "pii_scrubbed", "updated_at"])

    def include_restricted_context(self) -> bool:
        """A curator trains on this pair although its context is restricted; False if it is not."""
        if not self.restricted or self.include_restricted:
            return False
        self.include_restricted = True
        self.save(update_fields=["include_restricted", "updated_at"])
        return True
