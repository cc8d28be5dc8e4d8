"""Knowledge-base admin: collections, documents (multi-file upload, status, re-index), chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from console.knowledge import indexing, purging, syncing
from console.knowledge.models import Chunk, Collection, Document, Source, Sync


class _DocumentCounts(TypedDict):
    n_documents: int
    n_failed: int


if TYPE_CHECKING:  # django-stubs-ext takes two arguments only in the type checker
    from django_stubs_ext import WithAnnotations

    WithCounts = WithAnnotations[Collection, _DocumentCounts]  # CollectionAdmin.get_queryset's annotations


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "access", "documents", "failed"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_documents=Count("documents"),
                n_failed=Count("documents", filter=Q(documents__status=Document.Status.FAILED)),
            )
        )

    @admin.display(description="Readable by")
    def access(self, obj: Collection) -> str:
        return ", ".join(obj.allowed_scopes) or "every channel"

    @admin.display(ordering="n_documents")
    def documents(self, obj: WithCounts) -> int:
        return obj.n_documents

    @admin.display(ordering="n_failed")
    def failed(self, obj: WithCounts) -> int:
        return obj.n_failed


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("allow_empty_file", True)  # an empty file becomes a failed document with a reason
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class UploadForm(forms.Form):
    collection = forms.ModelChoiceField(queryset=Collection.objects.all())
    # Django's form metaclass moves declared fields off the class, so this does not shadow Form.files.
    files = MultipleFileField(  # type: ignore[assignment]
        help_text="Select one or more .txt, .md, .html, .pdf or .docx files."
    )


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = [
        "title_or_source",
        "collection",
        "status_badge",
        "progress_bar",
        "version",
        "chunks",
        "indexed_at",
    ]
    list_filter = ["status", "collection", "source_ref"]
    search_fields = ["title", "source", "error"]
    actions = ["reindex", "purge"]
    readonly_fields = [
        "url",
        "source_ref",
        "item_key",
        "item_version",
        "content_hash",
        "version",
        "status",
        "error",
        "progress",
        "chunk_count",
        "size_bytes",
        "indexed_at",
        "created_at",
        "updated_at",
    ]
    fields = ["collection", "title", "source", "file", *readonly_fields]

    def get_urls(self):
        upload = path(
            "upload/", self.admin_site.admin_view(self.upload_view), name="knowledge_document_upload"
        )
        return [upload, *super().get_urls()]

    def upload_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied("Uploading documents needs the 'Can add document' permission.")
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            queued, skipped, failed = self._register_uploads(form.cleaned_data)
            messages.info(request, f"Queued {queued} for indexing, {skipped} unchanged, {failed} failed.")
            return redirect("admin:knowledge_document_changelist")
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Upload documents",
            "opts": self.model._meta,
        }
        return render(request, "admin/knowledge/document/upload.html", context)

    def _register_uploads(self, data: dict[str, Any]) -> tuple[int, int, int]:
        changed: list[Document] = []
        skipped = failed = 0
        with transaction.atomic():
            for upload in data["files"]:
                registration = indexing.register_stream(data["collection"], upload.name, upload, upload.size)
                if registration.changed:
                    changed.append(registration.document)
                elif registration.document.status == Document.Status.FAILED:
                    failed += 1
                else:
                    skipped += 1
            indexing.enqueue_index(changed)
        return len(changed), skipped, failed

    def changelist_view(self, request, extra_context=None):
        busy = Document.objects.filter(
            status__in=[Document.Status.PENDING, Document.Status.INDEXING]
        ).exists()
        extra_context = {
            **(extra_context or {}),
            "auto_refresh": busy,
            "can_upload": self.has_add_permission(request),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description="Re-index selected documents", permissions=["change"])
    def reindex(self, request, queryset):
        count = indexing.mark_for_reindex(queryset)
        self.message_user(request, f"Queued {count} document(s) for re-indexing.")

    @admin.action(
        description="Purge selected documents (delete, and redact their text from answers and pairs)",
        permissions=["purge"],
    )
    def purge(self, request, queryset):
        count = purging.purge(queryset)
        self.message_user(
            request,
            f"Purged {count} document(s): deleted with their files, and their text redacted from "
            "recorded answers and training pairs.",
        )

    def has_purge_permission(self, request: HttpRequest) -> bool:
        """Purging rewrites other apps' records, so it is its own permission, not 'delete'."""
        return request.user.has_perm("knowledge.purge_document")

    @admin.display(description="Document", ordering="title")
    def title_or_source(self, obj: Document) -> str:
        return str(obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Document) -> SafeString:
        colour = {"indexed": "#2e7d32", "failed": "#c62828", "indexing": "#1565c0"}.get(obj.status, "#666")
        badge = format_html('<b style="color:{}">{}</b>', colour, obj.get_status_display())
        if obj.status == Document.Status.FAILED:
            return format_html('{}<br><span style="color:#c62828">{}</span>', badge, obj.error)
        return badge

    @admin.display(description="Progress", ordering="progress")
    def progress_bar(self, obj: Document) -> SafeString:
        return format_html('<progress max="100" value="{}"></progress> {}%', obj.progress, obj.progress)

    @admin.display(description="Chunks", ordering="chunk_count")
    def chunks(self, obj: Document) -> SafeString:
        url = reverse("admin:knowledge_chunk_changelist") + f"?document__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.chunk_count)


CHUNK_FIELDS = ("document", "ordinal", "heading", "token_count", "text")


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ["document", "ordinal", "heading", "token_count", "excerpt"]
    list_filter = ["document__collection"]
    search_fields = ["text", "heading", "document__title"]
    list_select_related = ["document"]
    fields = readonly_fields = CHUNK_FIELDS

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Text")
    def excerpt(self, obj: Chunk) -> str:
        text = " ".join(obj.text.split())
        return text[:160] + ("…" if len(text) > 160 else "")


SYNC_COUNTS = ("listed", "added", "updated", "unchanged", "deleted", "failed")


class SyncInline(admin.TabularInline):
    """The source's recent syncs (the last 20), newest first."""

    model = Sync
    extra = 0
    can_delete = False
    verbose_name_plural = "Sync history (the last 20)"
    fields = ("started_at", "status", "took", "progress", *SYNC_COUNTS, "error")
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        recent = list(queryset.order_by("-started_at").values_list("pk", flat=True)[:20])
        return queryset.filter(pk__in=recent)

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Duration")
    def took(self, obj: Sync) -> str:
        return _seconds(obj.duration)

    @admin.display(description="Progress")
    def progress(self, obj: Sync) -> str:
        return f"{obj.done} of {obj.to_fetch} fetched" if obj.to_fetch else "—"


class SourceForm(forms.ModelForm):
    class Meta:
        model = Source
        fields = ["name", "kind", "collection", "options", "schedule", "enabled"]
        help_texts = {
            "options": (
                "JSON. folder: path, include, exclude; website: sitemap or start_url (+ prefix), max_pages; "
                "git: url, branch, paths; confluence: base_url, spaces, token_env; notion: base_url, "
                "token_env; slack: channels, accept_reaction. Credentials: only the name of the "
                "environment variable that holds them (token_env), never the token."
            )
        }


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = [
        "name",
        "kind",
        "collection",
        "status_badge",
        "documents",
        "last_sync",
        "last_synced_at",
        "next_sync_at",
        "schedule",
    ]
    list_filter = ["status", "kind", "collection", "enabled"]
    search_fields = ["name", "last_error"]
    actions = ["sync_now"]
    readonly_fields = ["status", "last_error", "last_synced_at", "next_sync_at", "queued_at"]
    fields = ["name", "kind", "collection", "options", "schedule", "enabled", *readonly_fields]
    inlines = [SyncInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("collection")
            .annotate(n_documents=Count("documents"))
        )

    def save_model(self, request, obj, form, change):
        if change and {"options", "kind", "schedule", "collection"} & set(form.changed_data):
            obj.last_error, obj.next_sync_at = "", None  # synced at the next minute with what was set
        super().save_model(request, obj, form, change)

    def changelist_view(self, request, extra_context=None):
        busy = Source.objects.filter(status=Source.Status.SYNCING).exists()
        return super().changelist_view(request, {**(extra_context or {}), "auto_refresh": busy})

    @admin.action(description="Sync selected sources now", permissions=["sync"])
    def sync_now(self, request, queryset):
        queued = [source.name for source in queryset if syncing.enqueue_sync(source)]
        busy = queryset.count() - len(queued)
        message = f"Queued a sync of {len(queued)} source(s)."
        if busy:
            message += f" {busy} already had a sync queued or running."
        self.message_user(request, message)

    def has_sync_permission(self, request: HttpRequest) -> bool:
        """Syncing reaches out to other systems and can delete documents: its own permission."""
        return request.user.has_perm("knowledge.sync_source")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Source) -> SafeString:
        colour = {"ok": "#2e7d32", "failed": "#c62828", "flagged": "#e65100", "syncing": "#1565c0"}
        badge = format_html(
            '<b style="color:{}">{}</b>', colour.get(obj.status, "#666"), obj.get_status_display()
        )
        if obj.last_error:
            return format_html('{}<br><span style="color:#c62828">{}</span>', badge, obj.last_error)
        return badge

    @admin.display(description="Documents", ordering="n_documents")
    def documents(self, obj: Source) -> SafeString:
        url = reverse("admin:knowledge_document_changelist") + f"?source_ref__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "n_documents", 0))

    @admin.display(description="Last sync")
    def last_sync(self, obj: Source) -> str:
        sync = obj.syncs.first()
        if sync is None:
            return "—"
        if sync.status == Sync.Status.RUNNING:
            return f"running {_seconds(sync.duration)}: {sync.done} of {sync.to_fetch} fetched"
        return (
            f"+{sync.added} added, {sync.updated} updated, {sync.unchanged} unchanged, "
            f"{sync.deleted} deleted, {sync.failed} failed in {_seconds(sync.duration)}"
        )


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
