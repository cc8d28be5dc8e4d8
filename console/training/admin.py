"""Adapters in the admin: which one serves, promote and roll back."""

from __future__ import annotations

from django.contrib import admin, messages

from console.training import services
from console.training.models import TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "active", "base_model", "created_at", "promoted_at"]
    list_filter = ["status", "active"]
    search_fields = ["name"]
    readonly_fields = ["active", "promoted_at", "created_at", "metrics", "hyperparameters", "error"]
    actions = ["make_live"]

    @admin.action(description="Serve this adapter (promote, or roll back to it)")
    def make_live(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one run to serve.", messages.ERROR)
            return
        run = queryset.get()
        if run.status != TrainingRun.Status.SUCCEEDED or not run.adapter_path:
            self.message_user(request, f"{run} has no finished adapter to serve.", messages.ERROR)
            return
        services.promote(run)
        self.message_user(request, f"{run} now answers; every process switches within seconds.")
