import pytest

from console.conversations.models import Answer
from console.conversations.threads import answer_for_message, attach_message, thread_history

pytestmark = pytest.mark.django_db


def _answer(question, text, thread="100.1", channel="C1") -> Answer:
    return Answer.objects.create(
        platform="slack", channel=channel, thread=thread, question=question, text=text, mode="rag"
    )


def test_thread_history_is_the_earlier_turns_oldest_first():
    _answer("q1", "a1")
    _answer("q2", "a2")
    _answer("elsewhere", "x", thread="200.2")
    history = thread_history("slack", "C1", "100.1")
    assert [(t.role, t.content) for t in history] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
    ]


def test_thread_history_keeps_only_the_last_turns():
    for i in range(5):
        _answer(f"q{i}", f"a{i}")
    assert [t.content for t in thread_history("slack", "C1", "100.1", limit=2)] == ["q4", "a4"]


def test_no_thread_means_no_history():
    _answer("q1", "a1", thread="")
    assert thread_history("slack", "C1", "") == []


def test_a_reply_message_finds_its_answer():
    answer = _answer("q", "a")
    attach_message(answer, "1700000000.000200")
    assert answer_for_message("slack", "C1", "1700000000.000200") == answer
    assert answer_for_message("slack", "C2", "1700000000.000200") is None
