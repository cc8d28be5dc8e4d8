"""The chat page: ask as a logged-in user, read the answer with its sources, vote 👍/👎.

Plain form posts that work without JavaScript (post, redirect, get); chat.js upgrades them to
fetch calls that stream the answer's text as it is generated (newline-delimited JSON), then swap
in the same `_answer.html` fragment the page renders.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from console.conversations import answering, votes
from console.conversations.models import Answer, Feedback, Mode, Platform
from console.conversations.pseudonyms import hash_id
from console.conversations.streaming import AnswerStream, Delta, Done, Failed, failure_for
from console.conversations.threads import thread_history

SESSION_KEY = "chat_thread"
RECENT_ANSWERS = 5  # answers of the conversation shown on the page
STAGES = ("embed", "search", "load", "prompt", "generate", "total")
_CITATION = re.compile(r"\[(\d+)\]")

console_login_required = login_required(login_url="admin:login")
STREAM_TYPE = "application/x-ndjson"


def default_mode_label() -> str:
    config = answering.channel_config(Platform.WEB, "")
    mode = answering.resolve_mode(None, config, answering.active_adapter())
    return f"Default ({Mode(mode).label.lower()})"


class AskForm(forms.Form):
    question = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Ask about the team's documents…"}),
    )
    mode = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["mode"]).choices = [("", default_mode_label()), *Mode.choices]


class VoteForm(forms.Form):
    value = forms.TypedChoiceField(choices=[("1", "👍"), ("-1", "👎")], coerce=int)


class _Votes(TypedDict):
    up: int
    down: int


if TYPE_CHECKING:  # django-stubs-ext takes two arguments only in the type checker
    from django_stubs_ext import WithAnnotations

    WithVotes = WithAnnotations[Answer, _Votes]  # cards()' annotations


@dataclass
class Card:
    """An answer as the page shows it."""

    answer: Answer
    up: int = 0
    down: int = 0
    my_vote: int = 0
    sources: list[dict] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def text_html(self) -> SafeString:
        """The answer text, escaped, with [n] linked to its source on the page."""
        numbers = {source["number"] for source in self.sources}
        pk = self.answer.pk

        def link(match: re.Match) -> str:
            n = int(match.group(1))
            if n not in numbers:
                return match.group(0)
            return f'<a class="cite" href="#answer-{pk}-source-{n}">[{n}]</a>'

        return mark_safe(_CITATION.sub(link, escape(self.answer.text)).replace("\n", "<br>"))


def voter(request: HttpRequest) -> str:
    return str(request.user.pk)


def own_answers(request: HttpRequest) -> QuerySet[Answer]:
    """The answers this user asked for on the chat page (the asker is stored hashed)."""
    return Answer.objects.filter(platform=Platform.WEB, asker=hash_id(Platform.WEB, voter(request)))


def cards(request: HttpRequest, answer_ids: list[int]) -> list[Card]:
    """Cards for the given answers, in the given order, with vote counts and the user's own vote."""
    answers = (
        own_answers(request)
        .filter(pk__in=answer_ids)
        .select_related("adapter")
        .annotate(
            up=Count("feedback", filter=Q(feedback__value=1)),
            down=Count("feedback", filter=Q(feedback__value=-1)),
        )
    )
    mine = dict(
        Feedback.objects.filter(
            answer__in=answer_ids, voter=hash_id(Platform.WEB, voter(request))
        ).values_list("answer_id", "value")
    )
    by_id = {answer.pk: answer for answer in answers}
    return [card(by_id[pk], mine.get(pk, 0)) for pk in answer_ids if pk in by_id]


def card(answer: WithVotes, my_vote: int) -> Card:
    sources = [
        {**source, "href": source["source"] if source["source"].startswith(("http://", "https://")) else ""}
        for source in answer.sources
    ]
    timings = [(stage, answer.timings[stage]) for stage in STAGES if stage in answer.timings]
    return Card(answer, answer.up, answer.down, my_vote, sources, timings)


def conversation(request: HttpRequest) -> str:
    """This session's conversation: the `thread` its answers are recorded under."""
    if SESSION_KEY not in request.session:
        request.session[SESSION_KEY] = uuid.uuid4().hex
    return request.session[SESSION_KEY]


def recent_ids(request: HttpRequest) -> list[int]:
    """The conversation's latest answers, newest first."""
    answers = Answer.objects.filter(platform=Platform.WEB, channel="", thread=conversation(request))
    return list(answers.order_by("-created_at").values_list("pk", flat=True)[:RECENT_ANSWERS])


def wants_fragment(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def wants_stream(request: HttpRequest) -> bool:
    return wants_fragment(request) and STREAM_TYPE in request.headers.get("Accept", "")


def page(request: HttpRequest, form: AskForm, status: int = 200) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Ask the bot",
        "form": form,
        "cards": cards(request, recent_ids(request)),
    }
    return render(request, "conversations/chat.html", context, status=status)


@console_login_required
@require_GET
def chat(request: HttpRequest) -> HttpResponse:
    return page(request, AskForm())


@console_login_required
@require_POST
def ask(request: HttpRequest) -> HttpResponseBase:
    form = AskForm(request.POST)
    if not form.is_valid():
        return failure(request, form, "Write a question first (up to 4000 characters).", status=400)
    question = {
        "question": form.cleaned_data["question"],
        "platform": Platform.WEB,
        "user": voter(request),
        "thread": conversation(request),
        "history": thread_history(Platform.WEB, "", conversation(request)),
        "mode": form.cleaned_data["mode"] or None,
    }
    if wants_stream(request):
        return StreamingHttpResponse(stream_answer(request, question), content_type=STREAM_TYPE)
    try:
        answer = answering.answer(**question)
    except Exception as error:
        failed = failure_for(error)
        return failure(request, form, failed.message, status=failed.status)
    if wants_fragment(request):
        return render(request, "conversations/_answer.html", {"card": cards(request, [answer.pk])[0]})
    return redirect(f"{reverse('conversations:chat')}#answer-{answer.pk}")


def stream_answer(request: HttpRequest, question: dict) -> Iterator[str]:
    """One JSON object a line: {"delta": text} as the model writes, then {"html": the answer card},
    or {"error": message, "status": code}. The response has already started, so failures travel
    as the last line."""
    for event in AnswerStream(**question):
        match event:
            case Delta(text):
                yield json.dumps({"delta": text}) + "\n"
            case Done(answer):
                card_html = render_to_string(
                    "conversations/_answer.html", {"card": cards(request, [answer.pk])[0]}, request=request
                )
                yield json.dumps({"html": card_html}) + "\n"
            case Failed(status, message):
                yield json.dumps(
                    {"error": str(format_html('<p class="errornote">{}</p>', message)), "status": status}
                )
                yield "\n"


def failure(request: HttpRequest, form: AskForm, message: str, *, status: int) -> HttpResponse:
    if wants_fragment(request):
        return HttpResponse(format_html('<p class="errornote">{}</p>', message), status=status)
    messages.error(request, message)
    return page(request, form, status=status)


@console_login_required
@require_POST
def vote(request: HttpRequest, pk: int) -> HttpResponse:
    """A vote on one of the person's own chat-page answers; any other answer id is a 404 (its card
    would show another person's or another channel's question and answer)."""
    answer = get_object_or_404(own_answers(request), pk=pk)
    form = VoteForm(request.POST)
    if not form.is_valid():
        return HttpResponse("A vote is 1 (👍) or -1 (👎).", status=400)
    votes.record_feedback(
        answer.pk, platform=Platform.WEB, voter=voter(request), value=form.cleaned_data["value"]
    )
    if wants_fragment(request):
        return render(request, "conversations/_answer.html", {"card": cards(request, [answer.pk])[0]})
    return redirect(f"{reverse('conversations:chat')}#answer-{answer.pk}")


@console_login_required
@require_POST
def clear(request: HttpRequest) -> HttpResponse:
    """Start a new conversation: the page and the model forget the earlier answers (they stay recorded)."""
    request.session.pop(SESSION_KEY, None)
    return redirect("conversations:chat")
