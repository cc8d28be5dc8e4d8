"""Training runs in the admin: progress, metrics, the side-by-side evaluation, train/promote/rollback."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from console.training import adapters, runs
from console.training.models import ContextFrom, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "progress_bar",
        "loss",
        "active",
        "pairs",
        "speed",
        "duration",
        "gate",
        "created_at",
    ]
    list_filter = ["status", "active"]
    search_fields = ["name", "dataset_hash"]
    readonly_fields = [
        "name",
        "base_model",
        "status",
        "error",
        "adapter_path",
        "active",
        "progress",
        "step",
        "total_steps",
        "current_loss",
        "tokens_per_second",
        "dataset_hash",
        "pair_ids",
        "heldout_ids",
        "hyperparameters",
        "system_prompt",
        "metrics",
        "evaluation_link",
        "created_at",
        "started_at",
        "finished_at",
        "promoted_at",
    ]
    exclude = ["evaluation", "examples"]
    actions = ["make_live", "retry"]

    def has_add_permission(self, request):
        return False

    def get_queryset(self, request):
        # A run's snapshot holds every example with its context: megabytes the list never shows.
        return super().get_queryset(request).defer("examples")

    def has_start_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("training.start_training")

    def has_promote_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("training.promote_adapter")

    def has_evaluation_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("training.read_evaluation")

    def get_urls(self):
        extra = [
            path("train/", self.admin_site.admin_view(self.train_view), name="training_trainingrun_train"),
            path(
                "<int:pk>/evaluation/",
                self.admin_site.admin_view(self.evaluation_view),
                name="training_trainingrun_evaluation",
            ),
        ]
        return extra + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        busy = TrainingRun.objects.filter(status__in=["queued", "running", "evaluating"]).exists()
        context = {"auto_refresh": busy, "can_train": self.has_start_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def train_view(self, request):
        if request.method != "POST":
            return redirect("admin:training_trainingrun_changelist")
        if not self.has_start_permission(request):
            raise PermissionDenied(
                "Starting training needs the 'Can start (or retry) a training run' permission."
            )
        try:
            run = runs.start_run()
        except runs.NotEnoughPairs as err:
            self.message_user(request, str(err), messages.ERROR)
        else:
            self.message_user(
                request, f"Queued {run.name} on {len(run.pair_ids)} pairs ({len(run.heldout_ids)} held out)."
            )
        return redirect("admin:training_trainingrun_changelist")

    def evaluation_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The held-out questions with every model's answer: they quote pairs' text, so they need their
        own permission."""
        if not self.has_evaluation_permission(request):
            raise PermissionDenied(
                "Reading evaluations needs the 'Can read a run's side-by-side evaluation' permission."
            )
        run = get_object_or_404(TrainingRun, pk=pk)
        systems = _systems(run)
        context = {
            **self.admin_site.each_context(request),
            "run": run,
            "opts": self.model._meta,
            "title": f"Evaluation of {run.name}",
            "rows": [{**row, "cells": _cells(row, systems)} for row in run.evaluation],
            "systems": systems,
            "metrics": run.metrics,
            "examples": [{**e, "context_label": ContextFrom(e["context_from"]).label} for e in run.examples],
            "dropped": len(run.pair_ids) + len(run.heldout_ids) - len(run.examples) if run.examples else 0,
        }
        return render(request, "admin/training/trainingrun/evaluation.html", context)

    @admin.action(description="Serve this adapter (promote, or roll back to it)", permissions=["promote"])
    def make_live(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one run to serve.", messages.ERROR)
            return
        run = queryset.get()
        if run.status != TrainingRun.Status.SUCCEEDED or not run.adapter_path:
            self.message_user(request, f"{run} has no finished adapter to serve.", messages.ERROR)
            return
        adapters.promote(run)
        self.message_user(request, f"{run} now answers; every process switches within seconds.")

    @admin.action(description="Retry failed runs (resumes from the last checkpoint)", permissions=["start"])
    def retry(self, request, queryset):
        retried = 0
        for run in queryset.filter(status=TrainingRun.Status.FAILED):
            runs.retry_run(run)
            retried += 1
        self.message_user(request, f"Queued {retried} run(s) again.")

    @admin.display(description="Progress", ordering="progress")
    def progress_bar(self, run: TrainingRun) -> str:
        if run.status == TrainingRun.Status.EVALUATING:
            total = run.heldout_count
            return format_html(
                '<progress max="{}" value="{}"></progress> evaluating: {} of {} questions answered',
                total,
                run.evaluated,
                run.evaluated,
                total,
            )
        return format_html(
            '<progress max="100" value="{}"></progress> {}% ({}/{})',
            run.progress,
            run.progress,
            run.step,
            run.total_steps,
        )

    @admin.display(description="Loss")
    def loss(self, run: TrainingRun) -> str:
        return "—" if run.current_loss is None else f"{run.current_loss:.3f}"

    @admin.display(description="Pairs")
    def pairs(self, run: TrainingRun) -> str:
        return f"{len(run.pair_ids)} + {len(run.heldout_ids)} held out"

    @admin.display(description="Tokens/s")
    def speed(self, run: TrainingRun) -> str:
        return "—" if run.tokens_per_second is None else f"{run.tokens_per_second:.0f}"

    @admin.display(description="Duration")
    def duration(self, run: TrainingRun) -> str:
        if not (run.started_at and run.finished_at):
            return "—"
        return f"{(run.finished_at - run.started_at).total_seconds():.0f} s"

    @admin.display(description="Gate")
    def gate(self, run: TrainingRun) -> str:
        if "promoted" not in run.metrics:
            return run.error[:120] if run.error else "—"
        url = reverse("admin:training_trainingrun_evaluation", args=[run.pk])
        verdict = "passed" if run.metrics["promoted"] else "refused"
        return format_html('<a href="{}">{}: see evaluation</a>', url, verdict)

    @admin.display(description="Evaluation")
    def evaluation_link(self, run: TrainingRun) -> SafeString:
        url = reverse("admin:training_trainingrun_evaluation", args=[run.pk])
        return format_html('<a href="{}">Side-by-side answers ({} questions)</a>', url, len(run.evaluation))


SYSTEM_LABELS = {
    "base": "Base model + retrieval (rag)",
    "live": "Live adapter + retrieval",
    "candidate": "Candidate + retrieval (both)",
}


def _systems(run: TrainingRun) -> list[dict]:
    """The evaluated systems, side by side: label and mean scores. Runs evaluated before live
    retrieval answered with each pair's stored context, and are labelled so."""
    live_retrieval = run.metrics.get("retrieval") == "live" or not run.metrics
    systems = []
    for who in ("base", "live", "candidate"):
        label = SYSTEM_LABELS[who] if live_retrieval else who.capitalize()
        if who == "live":
            label += f" ({run.metrics.get('live_adapter') or 'none was live'})"
        systems.append({"who": who, "label": label, "scores": run.metrics.get(who, {})})
    return systems


def _cells(row: dict, systems: list[dict]) -> list[dict]:
    """One row's answers in the systems' order, each with its own scores where recorded."""
    return [{"text": row.get(s["who"]), "scores": (row.get("scores") or {}).get(s["who"])} for s in systems]
