"""Adapters: each TrainingRun may produce one LoRA adapter; at most one run is active."""

from __future__ import annotations

from django.db import models


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
    metrics = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="one_active_adapter"
            ),
        ]

    def __str__(self) -> str:
        return self.name
