import pytest

from console.conversations.models import Answer, Feedback
from console.training.models import TrainingPair
from tests.knowledge.conftest import ONCALL_MD

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    chunk = document.chunks.first()
    answer = Answer.objects.create(
        platform="slack",
        channel="C1",
        question="Who do I page? Mail jane@example.com",
        text="Page the primary via PagerDuty [1]; call +44 20 7946 0958.",
        mode="rag",
        retrieved=[{"chunk_id": chunk.pk, "document_id": document.pk, "document_version": 1, "score": 0.03}],
        context=[{"number": 1, "title": "On-call", "heading": "Paging", "text": chunk.text}],
    )
    return document, answer


def _vote(answer, voter, value, capture):
    with capture(execute=True):
        Feedback.objects.update_or_create(
            answer=answer, voter=voter, defaults={"value": value, "platform": "slack"}
        )


def test_thumbs_up_nominates_a_scrubbed_candidate_and_counts_distinct_voters(
    answered, django_capture_on_commit_callbacks
):
    _, answer = answered
    _vote(answer, "v1", 1, django_capture_on_commit_callbacks)
    pair = TrainingPair.objects.get(origin=answer)
    assert pair.status == "candidate" and pair.source == "feedback" and pair.votes == 1
    assert "jane@example.com" not in pair.question and "[EMAIL]" in pair.question
    assert "7946" not in pair.answer and pair.pii_scrubbed
    assert pair.context == answer.context and pair.documents == [
        {"document_id": answered[0].pk, "version": 1}
    ]
    _vote(answer, "v2", 1, django_capture_on_commit_callbacks)
    _vote(answer, "v2", 1, django_capture_on_commit_callbacks)
    assert TrainingPair.objects.get(origin=answer).votes == 2
    assert TrainingPair.objects.count() == 1


def test_thumbs_down_nominates_nothing_and_withdrawn_votes_remove_the_candidate(
    answered, django_capture_on_commit_callbacks
):
    _, answer = answered
    _vote(answer, "v1", -1, django_capture_on_commit_callbacks)
    assert not TrainingPair.objects.exists()
    _vote(answer, "v1", 1, django_capture_on_commit_callbacks)
    assert TrainingPair.objects.filter(origin=answer).exists()
    _vote(answer, "v1", -1, django_capture_on_commit_callbacks)
    assert not TrainingPair.objects.exists()


def test_a_changed_document_makes_its_pairs_stale(
    answered, add_document, collection, django_capture_on_commit_callbacks
):
    document, answer = answered
    _vote(answer, "v1", 1, django_capture_on_commit_callbacks)
    add_document(collection, "oncall.md", ONCALL_MD.replace("5 minutes", "3 minutes"))
    assert TrainingPair.objects.get(origin=answer).stale is True


def test_a_deleted_document_makes_its_pairs_stale(answered, django_capture_on_commit_callbacks):
    document, answer = answered
    _vote(answer, "v1", 1, django_capture_on_commit_callbacks)
    document.delete()
    assert TrainingPair.objects.get(origin=answer).stale is True
