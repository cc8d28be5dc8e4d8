import pytest

from console.conversations.models import Answer
from console.training.models import TrainingPair
from console.training.pairs import add_correction

pytestmark = pytest.mark.django_db


def _answer(**fields) -> Answer:
    defaults = dict(
        platform="slack", channel="C1", question="How long is the canary?", text="5 minutes", mode="rag"
    )
    return Answer.objects.create(
        **{**defaults, **fields, "context": [{"number": 1, "title": "Deploy", "text": "…"}]}
    )


def test_correction_becomes_an_approved_pair_with_the_original_context():
    answer = _answer()
    pair = add_correction(answer, "  15 minutes at 10% of traffic. ", reason="wrong duration")
    assert pair.status == TrainingPair.Status.APPROVED and pair.source == TrainingPair.Source.CORRECTION
    assert pair.question == answer.question and pair.context == answer.context
    assert pair.answer == "15 minutes at 10% of traffic." and pair.reason == "wrong duration"


def test_empty_correction_is_refused():
    with pytest.raises(ValueError, match="empty"):
        add_correction(_answer(), "   ")
