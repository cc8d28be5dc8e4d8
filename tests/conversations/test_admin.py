import re

import pytest
from django.urls import reverse

from console.conversations import api_keys, votes
from console.conversations.models import Answer, ApiKey, ChannelSettings, Feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def answer() -> Answer:
    answer = Answer.objects.create(
        platform="slack",
        channel="C042",
        question="How fast must on-call acknowledge a page?",
        text="Within 5 minutes [1].",
        mode="rag",
        sources=[
            {"number": 1, "cited": True, "document": "On-call rotation", "source": "oncall.md", "score": 0.03}
        ],
        context=[
            {
                "number": 1,
                "title": "On-call rotation",
                "heading": "Paging",
                "text": "Acknowledge within 5 minutes.",
            }
        ],
        retrieved=[
            {"chunk_id": 7, "document_id": 3, "document_version": 2, "score": 0.03, "similarity": 0.71}
        ],
        timings={"embed": 11.0, "search": 4.0, "generate": 1234.5, "total": 1260.0},
    )
    for voter, value in [("U1", 1), ("U2", 1), ("U3", -1)]:
        votes.record_feedback(answer.pk, platform="slack", voter=voter, value=value)
    return answer


def test_creating_an_api_key_shows_it_once_and_stores_its_hash(admin_client):
    response = admin_client.post(
        reverse("admin:conversations_apikey_add"), {"name": "docs search"}, follow=True
    )
    key = re.search(r"<code>(ab-[\w-]{43})</code>", response.content.decode()).group(1)
    row = ApiKey.objects.get()
    assert (row.name, row.prefix, row.key_hash) == ("docs search", key[:11], api_keys.hash_api_key(key))
    assert api_keys.authenticate_api_key(key) == row
    page = admin_client.get(reverse("admin:conversations_apikey_change", args=[row.pk])).content.decode()
    assert key not in page and row.prefix in page


def test_the_api_key_form_asks_only_for_a_name(admin_client):
    page = admin_client.get(reverse("admin:conversations_apikey_add")).content.decode()
    assert 'name="name"' in page and 'name="key_hash"' not in page and 'name="prefix"' not in page


def test_revoking_keys_refuses_them(admin_client):
    row, key = api_keys.create_api_key("old")
    admin_client.post(
        reverse("admin:conversations_apikey_changelist"), {"action": "revoke", "_selected_action": [row.pk]}
    )
    assert not ApiKey.objects.get().active
    assert api_keys.authenticate_api_key(key) is None


def test_answer_list_shows_votes_and_filters(admin_client, answer):
    url = reverse("admin:conversations_answer_changelist")
    page = admin_client.get(url).content.decode()
    assert "How fast must on-call acknowledge a page?" in page
    assert '<td class="field-thumbs_up">2</td>' in page and '<td class="field-thumbs_down">1</td>' in page
    assert "1,260" in page
    filtered = admin_client.get(url, {"mode__exact": "rag", "covered__exact": "1", "q": "on-call"})
    assert "How fast" in filtered.content.decode()
    assert "How fast" not in admin_client.get(url, {"platform__exact": "discord"}).content.decode()


def test_answer_detail_is_read_only_with_sources_chunks_and_timings(admin_client, answer):
    page = admin_client.get(reverse("admin:conversations_answer_change", args=[answer.pk])).content.decode()
    assert "On-call rotation" in page and "oncall.md" in page
    assert "Acknowledge within 5 minutes." in page and "0.71" in page
    assert "1234.5" in page and "👍 2 · 👎 1" in page
    assert 'name="question"' not in page and 'name="_save"' not in page
    assert admin_client.get(reverse("admin:conversations_answer_add")).status_code == 403


def test_feedback_list_is_read_only(admin_client, answer):
    page = admin_client.get(reverse("admin:conversations_feedback_changelist")).content.decode()
    assert page.count("How fast must on-call acknowledge") == 3
    assert admin_client.get(reverse("admin:conversations_feedback_add")).status_code == 403
    feedback = Feedback.objects.first()
    change = admin_client.get(reverse("admin:conversations_feedback_change", args=[feedback.pk]))
    assert 'name="value"' not in change.content.decode()


def test_channel_settings_are_edited_with_collections(admin_client, handbook):
    response = admin_client.post(
        reverse("admin:conversations_channelsettings_add"),
        {
            "platform": "slack",
            "channel_id": "C042",
            "name": "#ops",
            "enabled": "on",
            "mode": "prompt",
            "collections": [handbook.pk],
            "persona": "",
        },
    )
    assert response.status_code == 302
    row = ChannelSettings.objects.get()
    assert list(row.collections.all()) == [handbook]
    page = admin_client.get(reverse("admin:conversations_channelsettings_changelist")).content.decode()
    assert "#ops" in page and "C042" in page
    change = admin_client.get(reverse("admin:conversations_channelsettings_change", args=[row.pk]))
    assert "SelectFilter" in change.content.decode()  # filter_horizontal
