import pytest

from console.answering import hash_id
from console.conversations import services
from console.conversations.models import Answer, ApiKey, Feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def answer() -> Answer:
    return Answer.objects.create(
        platform="slack", question="Where is the VPN profile?", text="[1]", mode="rag"
    )


def test_a_changed_vote_updates_the_one_vote_of_that_voter(answer):
    first = services.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    again = services.record_feedback(answer.pk, platform="slack", voter="U1", value=-1, reason="wrong")
    assert again.pk == first.pk
    vote = Feedback.objects.get(answer=answer)
    assert (vote.value, vote.reason) == (-1, "wrong")


def test_each_voter_has_their_own_vote(answer):
    services.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    services.record_feedback(answer.pk, platform="slack", voter="U2", value=1)
    assert Feedback.objects.filter(answer=answer, value=1).count() == 2


def test_the_voter_is_stored_hashed(answer):
    vote = services.record_feedback(answer.pk, platform="slack", voter="U1", value=1)
    assert vote.voter == hash_id("slack", "U1") and "U1" not in vote.voter


@pytest.mark.parametrize("value", [0, 2, "1"])
def test_a_vote_is_plus_or_minus_one(answer, value):
    with pytest.raises(ValueError):
        services.record_feedback(answer.pk, platform="slack", voter="U1", value=value)


def test_a_vote_on_a_missing_answer_raises():
    with pytest.raises(Answer.DoesNotExist):
        services.record_feedback(404, platform="web", voter="1", value=1)


def test_api_keys_are_stored_as_prefix_and_hash_only():
    row, key = services.create_api_key("docs search")
    assert key.startswith("ab-") and len(key) > 40
    assert row.prefix == key[:11] and row.key_hash == services.hash_api_key(key)
    assert key not in (row.prefix, row.key_hash)


def test_only_the_exact_active_key_authenticates():
    row, key = services.create_api_key("docs search")
    assert services.authenticate_api_key(key) == row
    assert ApiKey.objects.get(pk=row.pk).last_used_at is not None
    assert services.authenticate_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert services.authenticate_api_key(key[:11]) is None
    assert services.authenticate_api_key("sk-" + key[3:]) is None
    ApiKey.objects.filter(pk=row.pk).update(active=False)
    assert services.authenticate_api_key(key) is None
