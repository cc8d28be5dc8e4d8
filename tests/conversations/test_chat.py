import json

import pytest
from django.urls import reverse

from console.conversations.answering import NOT_COVERED
from console.conversations.models import Answer, Feedback
from console.conversations.pseudonyms import hash_id
from tests.conversations.conftest import ONCALL_QUESTION, UNRELATED_QUESTION

pytestmark = pytest.mark.django_db
FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}
STREAM = {**FETCH, "HTTP_ACCEPT": "application/x-ndjson"}


def ask(client, question: str, mode: str = "", **headers):
    return client.post(reverse("conversations:ask"), {"question": question, "mode": mode}, **headers)


def test_chat_page_requires_login(client):
    for response in (client.get("/chat/"), ask(client, ONCALL_QUESTION)):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=/chat/")
    assert not Answer.objects.exists()


def test_chat_page_offers_the_default_and_every_mode(admin_client):
    page = admin_client.get("/chat/").content.decode()
    assert '<option value="" selected>Default (retrieval only)</option>' in page
    for mode in ("prompt", "rag", "adapter", "both"):
        assert f'<option value="{mode}">' in page


def test_asking_records_a_web_answer_and_shows_it_with_its_sources(admin_client, admin_user, handbook):
    response = ask(admin_client, ONCALL_QUESTION)
    answer = Answer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/chat/#answer-{answer.pk}"
    assert (answer.platform, answer.mode, answer.covered) == ("web", "rag", True)
    assert answer.asker == hash_id("web", str(admin_user.pk))
    assert answer.sources[0]["document"] == "On-call rotation"
    page = admin_client.get("/chat/").content.decode()
    assert f'id="answer-{answer.pk}"' in page
    assert ONCALL_QUESTION in page
    assert "On-call rotation" in page and "oncall.md" in page
    assert '<span class="badge mode" title="Retrieval only">rag</span>' in page
    assert "base model" in page and "total" in page


def test_asking_with_fetch_returns_just_the_answer_card(admin_client, handbook):
    response = ask(admin_client, ONCALL_QUESTION, **FETCH)
    answer = Answer.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith(f'<article class="card answer" id="answer-{answer.pk}"')
    assert "<html" not in html and "On-call rotation" in html


def test_the_mode_selector_overrides_the_default(admin_client, handbook):
    ask(admin_client, ONCALL_QUESTION, mode="prompt", **FETCH)
    answer = Answer.objects.get()
    assert (answer.mode, answer.sources, answer.retrieved) == ("prompt", [], [])


def test_the_live_adapter_is_shown(admin_client, handbook, trained_adapter):
    trained_adapter.active = True
    trained_adapter.save()
    html = ask(admin_client, ONCALL_QUESTION, **FETCH).content.decode()
    assert Answer.objects.get().adapter == trained_adapter
    assert ">both</span>" in html and "adapter tone-v1" in html


def test_a_question_the_documents_do_not_cover_says_so(admin_client, handbook):
    html = ask(admin_client, UNRELATED_QUESTION, **FETCH).content.decode()
    assert "not covered by the knowledge base" in html
    assert NOT_COVERED.split(",")[0] in html.replace("&#x27;", "'")


def test_an_empty_question_is_refused(admin_client):
    assert ask(admin_client, "   ", **FETCH).status_code == 400
    response = ask(admin_client, "")
    assert response.status_code == 400 and "Write a question first" in response.content.decode()
    assert not Answer.objects.exists()


def test_follow_ups_see_the_conversation_until_a_new_one_starts(admin_client, handbook):
    ask(admin_client, ONCALL_QUESTION)
    ask(admin_client, ONCALL_QUESTION)
    first, second = Answer.objects.order_by("created_at")
    assert first.thread and second.thread == first.thread
    assert second.prompt_tokens > first.prompt_tokens  # the first exchange is in the prompt
    page = admin_client.get("/chat/").content.decode()
    assert page.index(f'id="answer-{second.pk}"') < page.index(f'id="answer-{first.pk}"')  # newest first

    admin_client.post(reverse("conversations:clear"))
    assert 'id="answer-' not in admin_client.get("/chat/").content.decode()
    ask(admin_client, ONCALL_QUESTION)
    third = Answer.objects.latest("created_at")
    assert third.thread != first.thread and third.prompt_tokens == first.prompt_tokens


def vote(client, answer: Answer, value: int, **headers):
    return client.post(reverse("conversations:vote", args=[answer.pk]), {"value": value}, **headers)


def test_votes_are_one_per_user_and_a_changed_vote_updates(admin_client, admin_user, client, handbook):
    ask(admin_client, ONCALL_QUESTION)
    answer = Answer.objects.get()
    assert vote(admin_client, answer, 1).status_code == 302
    vote(admin_client, answer, 1)
    html = vote(admin_client, answer, -1, **FETCH).content.decode()
    feedback = Feedback.objects.get()
    assert (feedback.value, feedback.platform) == (-1, "web")
    assert feedback.voter == hash_id("web", str(admin_user.pk))
    assert 'class="vote-down chosen"' in html

    other = type(admin_user).objects.create_user("bob", password="not-used-here")
    client.force_login(other)
    ask(client, ONCALL_QUESTION)
    own = Answer.objects.latest("created_at")
    vote(client, own, 1)
    assert sorted(Feedback.objects.values_list("value", flat=True)) == [-1, 1]


def test_a_vote_on_someone_elses_or_another_platforms_answer_is_refused_unread(
    admin_client, admin_user, client, handbook
):
    ask(admin_client, ONCALL_QUESTION)
    alices = Answer.objects.get()
    slack = Answer.objects.create(
        platform="slack", channel="C0SECRET", question="What is the launch date?", text="The 3rd.", mode="rag"
    )
    other = type(admin_user).objects.create_user("bob", password="not-used-here")
    client.force_login(other)
    for answer in (alices, slack):
        response = vote(client, answer, -1, **FETCH)
        assert response.status_code == 404
        assert answer.question not in response.content.decode()
    assert vote(admin_client, slack, 1).status_code == 404  # not a web answer, even for its own staff
    assert not Feedback.objects.exists()


def test_a_bad_vote_is_refused(admin_client, handbook):
    ask(admin_client, ONCALL_QUESTION)
    answer = Answer.objects.get()
    assert vote(admin_client, answer, 5).status_code == 400
    missing = Answer(pk=answer.pk + 1)
    assert vote(admin_client, missing, 1).status_code == 404
    assert not Feedback.objects.exists()


def test_a_model_server_failure_is_explained_on_the_page(admin_client, model_server_down):
    response = ask(admin_client, ONCALL_QUESTION, mode="prompt", **FETCH)
    assert response.status_code == 503
    assert "The model could not answer" in response.content.decode()
    response = ask(admin_client, ONCALL_QUESTION, mode="prompt")
    assert response.status_code == 503 and "could not be reached" in response.content.decode()
    assert not Answer.objects.exists()


def streamed(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


# The answer runs on its own thread, with its own database connection: data must be committed.
@pytest.mark.django_db(transaction=True)
def test_a_streamed_answer_sends_its_text_piece_by_piece_then_the_card(admin_client, handbook):
    events = streamed(ask(admin_client, ONCALL_QUESTION, **STREAM))
    answer = Answer.objects.get()
    deltas = [event["delta"] for event in events[:-1]]
    assert len(deltas) >= 2 and len(deltas) == len(events) - 1
    assert "".join(deltas).strip() == answer.text
    assert events[-1]["html"].strip().startswith(f'<article class="card answer" id="answer-{answer.pk}"')
    assert "On-call rotation" in events[-1]["html"]


@pytest.mark.django_db(transaction=True)
def test_a_streamed_question_the_documents_do_not_cover_sends_only_the_card(admin_client, handbook):
    events = streamed(ask(admin_client, UNRELATED_QUESTION, **STREAM))
    assert len(events) == 1 and "not covered by the knowledge base" in events[0]["html"]


@pytest.mark.django_db(transaction=True)
def test_a_streamed_failure_ends_the_stream_with_the_reason(admin_client, model_server_down):
    events = streamed(ask(admin_client, ONCALL_QUESTION, mode="prompt", **STREAM))
    assert events == [{"error": events[0]["error"], "status": 503}]
    assert "The model could not answer" in events[0]["error"] and not Answer.objects.exists()
