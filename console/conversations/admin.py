"""Conversations admin: channel settings, every answer (read-only), feedback, API keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from console.conversations import api_keys
from console.conversations.models import Answer, ApiKey, ChannelSettings, Feedback
from ml.prompting import context_chunks


class _VoteCounts(TypedDict):
    n_up: int
    n_down: int


if TYPE_CHECKING:  # django-stubs-ext takes two arguments only in the type checker
    from django_stubs_ext import WithAnnotations

    WithVotes = WithAnnotations[Answer, _VoteCounts]  # AnswerAdmin.get_queryset's annotations

admin.site.site_header = "Answer bot console"
admin.site.site_title = "Answer bot"
admin.site.site_url = "/chat/"  # "View site" opens the chat page


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the bot: viewable and deletable, never added or edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChannelSettings)
class ChannelSettingsAdmin(admin.ModelAdmin):
    list_display = ["platform", "channel_id", "name", "enabled", "mode"]
    list_display_links = ["platform", "channel_id"]
    list_editable = ["enabled", "mode"]
    list_filter = ["platform", "enabled", "mode", "collections"]
    search_fields = ["channel_id", "name"]
    filter_horizontal = ["collections"]
    fields = ["platform", "channel_id", "name", "enabled", "mode", "collections", "persona"]


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "platform",
        "channel",
        "question_excerpt",
        "mode",
        "adapter",
        "covered",
        "total_ms",
        "thumbs_up",
        "thumbs_down",
    ]
    list_filter = ["mode", "platform", "covered", "adapter"]
    search_fields = ["question", "text"]
    date_hierarchy = "created_at"
    list_select_related = ["adapter"]
    fieldsets = [
        (None, {"fields": ["question", "text", "created_at", "mode", "adapter", "covered"]}),
        ("Where", {"fields": ["platform", "workspace", "channel", "thread", "message_id", "asker"]}),
        ("Sources", {"fields": ["sources_table", "context_table", "retrieved_table"]}),
        ("Cost", {"fields": ["timings_table", "prompt_tokens", "completion_tokens", "votes"]}),
    ]
    readonly_fields = ["sources_table", "context_table", "retrieved_table", "timings_table", "votes"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_up=Count("feedback", filter=Q(feedback__value=1)),
                n_down=Count("feedback", filter=Q(feedback__value=-1)),
            )
        )

    @admin.display(description="Question")
    def question_excerpt(self, obj: Answer) -> str:
        return Truncator(obj.question).chars(80)

    @admin.display(description="Total ms")
    def total_ms(self, obj: Answer) -> str:
        total = obj.timings.get("total")
        return "—" if total is None else f"{total:,.0f}"

    @admin.display(description="👍", ordering="n_up")
    def thumbs_up(self, obj: WithVotes) -> int:
        return obj.n_up

    @admin.display(description="👎", ordering="n_down")
    def thumbs_down(self, obj: WithVotes) -> int:
        return obj.n_down

    @admin.display(description="Votes")
    def votes(self, obj: WithVotes) -> str:
        url = reverse("admin:conversations_feedback_changelist") + f"?answer__id__exact={obj.pk}"
        return format_html('<a href="{}">👍 {} · 👎 {}</a>', url, obj.n_up, obj.n_down)

    @admin.display(description="Sources (cited first)")
    def sources_table(self, obj: Answer) -> str:
        rows = [
            (
                s["number"],
                "cited" if s.get("cited") else "",
                s["document"],
                s.get("source", ""),
                s.get("score"),
            )
            for s in obj.sources
        ]
        return table(["#", "", "Document", "Source", "Score"], rows)

    @admin.display(description="Context the model saw")
    def context_table(self, obj: Answer) -> str:
        chunks = context_chunks(obj.context)
        rows = [(number, c.title, c.heading, c.text) for number, c in enumerate(chunks, 1)]
        return table(["#", "Document", "Heading", "Text"], rows)

    @admin.display(description="Retrieved chunks")
    def retrieved_table(self, obj: Answer) -> str:
        rows = [
            (
                r["chunk_id"],
                r["document_id"],
                r.get("document_version"),
                r.get("score"),
                r.get("similarity"),
            )
            for r in obj.retrieved
        ]
        return table(["Chunk", "Document", "Version", "Score", "Similarity"], rows)

    @admin.display(description="Timings (ms)")
    def timings_table(self, obj: Answer) -> str:
        return table(["Stage", "ms"], list(obj.timings.items()))


def table(headers: list[str], rows: list[tuple]) -> str:
    """A small read-only HTML table for JSON fields; "—" when there is nothing to show."""
    if not rows:
        return "—"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell_text(c),) for c in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def cell_text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "vote", "answer_link", "platform", "reason", "updated_at"]
    list_filter = ["value", "platform"]
    search_fields = ["answer__question", "reason"]
    list_select_related = ["answer"]
    fields = ["answer", "platform", "voter", "value", "reason", "created_at", "updated_at"]

    @admin.display(description="Vote", ordering="value")
    def vote(self, obj: Feedback) -> str:
        return "👍" if obj.value > 0 else "👎"

    @admin.display(description="Answer")
    def answer_link(self, obj: Feedback) -> str:
        url = reverse("admin:conversations_answer_change", args=[obj.answer_id])
        return format_html('<a href="{}">{}</a>', url, Truncator(obj.answer.question).chars(80))


class ApiKeyCreationForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]
        help_texts = {"name": "Who or what uses this key, e.g. 'docs site search'."}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are generated here and shown once; only their prefix and SHA-256 are stored."""

    list_display = ["name", "prefix", "active", "created_at", "last_used_at"]
    list_filter = ["active"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name"]
        return ["name", "prefix", "active", "created_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["prefix", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, obj.prefix, obj.key_hash = api_keys.new_api_key()
        super().save_model(request, obj, form, change)
        messages.warning(
            request,
            format_html(
                "The API key for “{}” is <code>{}</code>. Copy it now: it is not stored and will not "
                "be shown again. Use it as <code>Authorization: Bearer KEY</code> with base URL "
                "<code>{}</code>.",
                obj.name,
                key,
                request.build_absolute_uri("/v1"),
            ),
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(active=True).update(active=False)
        self.message_user(request, f"Revoked {revoked} key(s); requests with them now get HTTP 401.")
