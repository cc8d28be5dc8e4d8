from datetime import timedelta

import pytest

from console.conversations.models import Answer
from console.conversations.pseudonyms import hash_id
from console.knowledge.models import Collection
from console.training import runs
from console.training.models import TrainingPair
from console.training.pairs import CorrectionRefused, add_correction, context_state
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db


def _answer(**fields) -> Answer:
    defaults = dict(
        platform="slack", channel="C1", question="How long is the canary?", text="5 minutes", mode="rag"
    )
    return Answer.objects.create(
        **{**defaults, **fields, "context": [{"number": 1, "title": "Deploy", "text": "…"}]}
    )


def _correct(answer: Answer, text: str, voter: str = "U0ALICE", **kwargs) -> TrainingPair:
    return add_correction(answer, text, platform="slack", voter=voter, **kwargs)


def test_correction_becomes_a_candidate_pair_with_the_original_context():
    answer = _answer()
    pair = _correct(answer, "  15 minutes at 10% of traffic. ", reason="wrong duration")
    assert pair.status == TrainingPair.Status.CANDIDATE and pair.source == TrainingPair.Source.CORRECTION
    assert pair.question == answer.question and pair.context == answer.context
    assert pair.answer == "15 minutes at 10% of traffic." and pair.reason == "wrong duration"
    assert pair.author == hash_id("slack", "U0ALICE")
    assert not TrainingPair.objects.trainable().exists()  # nothing trains without a curator


def test_empty_correction_is_refused():
    with pytest.raises(ValueError, match="empty"):
        _correct(_answer(), "   ")


def test_one_correction_per_answer_and_person_sending_again_replaces_the_candidate():
    answer = _answer()
    first = _correct(answer, "15 minutes.")
    again = _correct(answer, "15 minutes at 10% of traffic.")
    other = _correct(answer, "Ten minutes.", voter="U0BOB")
    assert again.pk == first.pk and other.pk != first.pk
    assert TrainingPair.objects.get(pk=first.pk).answer == "15 minutes at 10% of traffic."
    assert TrainingPair.objects.filter(origin=answer).count() == 2


def test_a_reviewed_correction_is_not_replaced():
    answer = _answer()
    pair = _correct(answer, "15 minutes.")
    TrainingPair.objects.filter(pk=pair.pk).update(status=TrainingPair.Status.REJECTED)
    with pytest.raises(CorrectionRefused, match="already reviewed"):
        _correct(answer, "Still 15 minutes!")
    assert TrainingPair.objects.get(pk=pair.pk).answer == "15 minutes."


def test_corrections_beyond_the_daily_limit_are_refused_politely(settings):
    settings.CORRECTIONS_PER_DAY = 3
    answers = [_answer(question=f"Question {n}?") for n in range(5)]
    for answer in answers[:3]:
        _correct(answer, "A better answer.")
    with pytest.raises(CorrectionRefused, match="already sent 3 better answers in the last 24 hours"):
        _correct(answers[3], "One too many.")
    _correct(answers[3], "Someone else's.", voter="U0BOB")  # the limit is per person
    TrainingPair.objects.filter(author=hash_id("slack", "U0ALICE")).update(
        created_at=TrainingPair.objects.first().created_at - timedelta(days=1, minutes=1)
    )
    _correct(answers[4], "A day later, allowed again.")
    assert TrainingPair.objects.filter(author=hash_id("slack", "U0ALICE")).count() == 4


# --- the access scope of a pair's context ------------------------------------------------------


def _answer_from(*documents) -> Answer:
    retrieved = [
        {"chunk_id": d.chunks.first().pk, "document_id": d.pk, "document_version": d.version, "score": 0.1}
        for d in documents
    ]
    return _answer(retrieved=retrieved)


@pytest.fixture
def restricted(db):
    return Collection.objects.create(name="Ops only", slug="ops-only", allowed_scopes=["slack:C0OPS"])


def test_a_pair_records_its_collections_and_whether_any_is_restricted(collection, restricted, add_document):
    open_doc = add_document(collection, "expenses.md", EXPENSES_MD)
    secret_doc = add_document(restricted, "oncall.md", ONCALL_MD)
    assert context_state(_answer_from(open_doc)) == {
        "collections": ["handbook"],
        "restricted": False,
        "stale": False,
    }
    pair = _correct(_answer_from(open_doc, secret_doc), "A better answer.")
    assert pair.collections == ["handbook", "ops-only"] and pair.restricted is True


def test_restricted_context_trains_only_when_a_curator_includes_that_pair(
    collection, restricted, add_document
):
    open_pair = _correct(_answer_from(add_document(collection, "expenses.md", EXPENSES_MD)), "Open.")
    secret_pair = _correct(_answer_from(add_document(restricted, "oncall.md", ONCALL_MD)), "Secret.")
    TrainingPair.objects.update(status=TrainingPair.Status.APPROVED)
    assert list(runs.trainable_pairs()) == [open_pair]
    secret_pair.refresh_from_db()
    assert secret_pair.include_restricted_context() is True
    assert secret_pair.include_restricted_context() is False  # already included
    assert list(runs.trainable_pairs()) == [open_pair, secret_pair]
    assert open_pair.include_restricted_context() is False  # nothing to include


def test_a_pair_from_an_answer_older_than_its_document_is_stale_at_birth(collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    answer = _answer_from(document)
    add_document(collection, "oncall.md", ONCALL_MD.replace("5 minutes", "3 minutes"))  # re-indexed since
    pair = _correct(answer, "Within 3 minutes.")
    assert pair.stale is True


def test_a_pair_citing_a_deleted_document_counts_as_restricted_and_stale(collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    answer = _answer_from(document)
    document.delete()
    assert context_state(answer) == {"collections": [], "restricted": True, "stale": True}
