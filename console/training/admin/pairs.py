"""Training pairs in the admin: filters, bulk actions, import/export and the dataset size."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from import_export.admin import ImportExportModelAdmin
from import_export.forms import ConfirmImportForm, ImportForm

from console.training.models import TrainingPair
from console.training.resources import FORMATS, JSONLines, PairExportResource, PairImportResource
from console.training.statistics import WORDS_TO_TOKENS, dataset_size
from ml.pii import scrub
from ml.prompting import context_chunks


class VotesFilter(admin.SimpleListFilter):
    title = "votes"
    parameter_name = "votes"

    def lookups(self, request, model_admin):
        return [("0", "0"), ("1", "1"), ("2+", "2 or more")]

    def queryset(self, request, queryset):
        match self.value():
            case "0":
                return queryset.filter(votes=0)
            case "1":
                return queryset.filter(votes=1)
            case "2+":
                return queryset.filter(votes__gte=2)
        return queryset


class AccessFilter(admin.SimpleListFilter):
    """Whose documents a pair's context quotes: open to every channel, or restricted to some."""

    title = "context access"
    parameter_name = "access"

    def lookups(self, request, model_admin):
        return [
            ("open", "Every channel"),
            ("restricted", "Restricted (left out of training)"),
            ("included", "Restricted, included by a curator"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "open":
                return queryset.filter(restricted=False)
            case "restricted":
                return queryset.filter(restricted=True, include_restricted=False)
            case "included":
                return queryset.filter(restricted=True, include_restricted=True)
        return queryset


class PairImportForm(ImportForm):
    approve = forms.BooleanField(
        required=False, help_text="Approve the imported pairs (otherwise they wait as candidates)."
    )


class PairConfirmImportForm(ConfirmImportForm):
    approve = forms.BooleanField(required=False, widget=forms.HiddenInput)


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


@admin.register(TrainingPair)
class TrainingPairAdmin(ImportExportModelAdmin):
    list_display = [
        "question_excerpt",
        "answer_excerpt",
        "source",
        "status",
        "access",
        "votes",
        "stale",
        "pii_scrubbed",
        "eval_only",
        "created_at",
    ]
    list_display_links = ["question_excerpt"]
    list_editable = ["status"]
    list_filter = ["status", "source", AccessFilter, VotesFilter, "stale", "eval_only"]
    search_fields = ["question", "answer"]
    actions = [
        "approve",
        "reject",
        "mark_eval_only",
        "clear_eval_only",
        "clear_stale",
        "include_restricted",
    ]
    fields = [
        "question",
        "answer",
        "status",
        "eval_only",
        "reason",
        "context_view",
        "access",
        "source",
        "votes",
        "stale",
        "pii_scrubbed",
        "origin",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [
        "context_view",
        "access",
        "source",
        "votes",
        "stale",
        "pii_scrubbed",
        "origin",
        "created_at",
        "updated_at",
    ]
    change_list_template = "admin/training/trainingpair/change_list.html"
    import_template_name = "admin/training/trainingpair/import.html"
    formats = FORMATS
    import_form_class = PairImportForm
    confirm_form_class = PairConfirmImportForm

    def has_include_restricted_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("training.include_restricted_pair")

    def has_import_permission(self, request):
        return self.has_add_permission(request)

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    def get_import_resource_classes(self, request):
        return [PairImportResource]

    def get_export_resource_classes(self, request):
        return [PairExportResource]

    def get_import_resource_kwargs(self, request, **kwargs):
        form = kwargs.get("form")
        return {"approve": bool(getattr(form, "cleaned_data", {}).get("approve"))}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["approve"] = import_form.cleaned_data.get("approve", False)
        return initial

    def get_export_data(self, file_format, request, queryset, **kwargs):
        kwargs["structured"] = isinstance(file_format, JSONLines)
        return super().get_export_data(file_format, request, queryset, **kwargs)

    def get_export_resource_kwargs(self, request, **kwargs):
        return {"structured": kwargs.get("structured", False)}

    def add_success_message(self, result, request):
        report = result.pair_report
        messages.success(
            request,
            f"Imported {report.imported} pair(s), skipped {report.duplicates} duplicate(s), "
            f"rejected {len(report.rejected)}.",
        )
        if report.rejected:
            shown = "; ".join(f"record {number}: {reason}" for number, reason in report.rejected[:20])
            more = f" (and {len(report.rejected) - 20} more)" if len(report.rejected) > 20 else ""
            messages.warning(request, f"Rejected rows — {shown}{more}. Fix them and import the file again.")

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "dataset": dataset_size(),
            "words_to_tokens": WORDS_TO_TOKENS,
        }
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        """Edited text is scrubbed like every stored pair; approving a pair clears its stale flag."""
        scrubbed = [
            name
            for name in ("question", "answer", "reason")
            if name in form.changed_data and self._scrub(obj, name)
        ]
        if scrubbed:
            obj.pii_scrubbed = True
            messages.warning(
                request, f"Personal data or secrets were replaced in the {' and '.join(scrubbed)}."
            )
        if "status" in form.changed_data and obj.status == TrainingPair.Status.APPROVED:
            obj.stale = False
        if not change:
            obj.source = TrainingPair.Source.MANUAL
        super().save_model(request, obj, form, change)

    @staticmethod
    def _scrub(obj: TrainingPair, name: str) -> bool:
        result = scrub(getattr(obj, name))
        setattr(obj, name, result.text)
        return result.changed

    @admin.action(description="Approve selected pairs (re-approving clears stale)", permissions=["change"])
    def approve(self, request, queryset):
        count = queryset.update(status=TrainingPair.Status.APPROVED, stale=False, updated_at=timezone.now())
        self.message_user(request, f"Approved {count} pair(s); they join the next training run.")

    @admin.action(description="Reject selected pairs", permissions=["change"])
    def reject(self, request, queryset):
        count = queryset.update(status=TrainingPair.Status.REJECTED, updated_at=timezone.now())
        self.message_user(request, f"Rejected {count} pair(s).")

    @admin.action(description="Hold out for evaluation only", permissions=["change"])
    def mark_eval_only(self, request, queryset):
        count = queryset.update(eval_only=True, updated_at=timezone.now())
        self.message_user(request, f"{count} pair(s) now only evaluate adapters and are never trained on.")

    @admin.action(description="Use for training again (not evaluation-only)", permissions=["change"])
    def clear_eval_only(self, request, queryset):
        count = queryset.update(eval_only=False, updated_at=timezone.now())
        self.message_user(request, f"{count} pair(s) may be trained on again.")

    @admin.action(description="Clear stale flag (context still right)", permissions=["change"])
    def clear_stale(self, request, queryset):
        count = queryset.update(stale=False, updated_at=timezone.now())
        self.message_user(request, f"Cleared the stale flag on {count} pair(s).")

    @admin.action(
        description="Train on restricted context anyway (each pair is recorded in its history)",
        permissions=["include_restricted"],
    )
    def include_restricted(self, request, queryset):
        """Restricted context reaches the shared adapter, which answers every channel: a curator with
        the dedicated permission decides pair by pair, and each decision lands in the pair's history."""
        included = 0
        for pair in queryset.filter(restricted=True, include_restricted=False):
            if pair.include_restricted_context():
                self.log_change(request, pair, "Included in training despite restricted context.")
                included += 1
        self.message_user(
            request,
            f"{included} pair(s) with restricted context will be trained on once approved; "
            "the adapter answers every channel, so their facts may show up anywhere.",
            messages.WARNING,
        )

    @admin.display(description="Context access", ordering="restricted")
    def access(self, obj: TrainingPair) -> SafeString:
        where = ", ".join(obj.collections) or "no documents"
        if not obj.restricted:
            return format_html('<span title="{}">every channel</span>', where)
        if obj.include_restricted:
            return format_html('<b style="color:#b26a00" title="{}">restricted, included</b>', where)
        return format_html('<b style="color:#c62828" title="{}">restricted</b>', where)

    @admin.display(description="Question", ordering="question")
    def question_excerpt(self, obj: TrainingPair) -> str:
        return _excerpt(obj.question, 90)

    @admin.display(description="Answer")
    def answer_excerpt(self, obj: TrainingPair) -> str:
        return _excerpt(obj.answer, 140)

    @admin.display(description="Context the model saw")
    def context_view(self, obj: TrainingPair) -> str:
        chunks = context_chunks(obj.context)
        if not chunks:
            return "—"
        return format_html_join(
            "",
            '<div style="margin-bottom:1em"><b>[{}] {} {}</b><div style="white-space:pre-wrap">{}</div></div>',
            ((number, c.title, c.heading, c.text) for number, c in enumerate(chunks, 1)),
        )
