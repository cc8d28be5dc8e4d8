import pytest

from console.conversations import votes
from console.conversations.models import Answer, Feedback
from console.conversations.pseudonyms import hash_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def answer() -> Answer:
    return Answer.objects.create(
        platform="slack", question="Where is the VPN profile?", text="[1]", mode="rag"
    )


def test_a_changed_vote_updates_the_one_vote_of_that_voter(answer):
    first = votes.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    again = votes.record_feedback(answer.pk, platform="slack", voter="U1", value=-1, reason="wrong")
    assert again.pk == first.pk
    vote = Feedback.objects.get(answer=answer)
    assert (vote.value, vote.reason) == (-1, "wrong")


def test_each_voter_has_their_own_vote(answer):
    votes.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    votes.record_feedback(answer.pk, platform="slack", voter="U2", value=1)
    assert Feedback.objects.filter(answer=answer, value=1).count() == 2


def test_the_voter_is_stored_hashed(answer):
    vote = votes.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    assert vote.voter == hash_id("slack", "U1") and "U1" not in vote.voter


@pytest.mark.parametrize("value", [0, 2, "1"])
def test_a_vote_is_plus_or_minus_one(answer, value):
    with pytest.raises(ValueError):
        votes.record_feedback(answer.pk, platform="slack", voter="U1", value=value)


def test_a_vote_on_a_missing_answer_raises():
    with pytest.raises(Answer.DoesNotExist):
        votes.record_feedback(404, platform="web", voter="1", value=1)
