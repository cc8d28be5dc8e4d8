"""streaming.AnswerStream: answering.answer() read as events, and the one error-to-status mapping."""

import logging

import pytest

from console.conversations import answering
from console.conversations.answering import NOT_COVERED
from console.conversations.models import Answer, Platform
from console.conversations.streaming import AnswerStream, Delta, Done, Failed, failure_for
from tests.conversations.conftest import ONCALL_QUESTION, UNRELATED_QUESTION

# The answer runs on its own thread, with its own database connection: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_deltas_come_first_and_join_to_the_recorded_text_then_done(handbook):
    events = list(AnswerStream(ONCALL_QUESTION, platform=Platform.WEB, mode="rag"))
    *deltas, done = events
    assert len(deltas) >= 2 and all(isinstance(event, Delta) for event in deltas)
    assert isinstance(done, Done) and done.answer == Answer.objects.get()
    assert "".join(delta.text for delta in deltas).strip() == done.answer.text != ""


def test_a_question_the_documents_do_not_cover_is_done_without_deltas(handbook):
    events = list(AnswerStream(UNRELATED_QUESTION, platform=Platform.WEB))
    assert len(events) == 1 and events[0].answer.text == NOT_COVERED


def test_a_model_server_failure_ends_the_stream_as_a_503(model_server_down):
    events = list(AnswerStream(ONCALL_QUESTION, platform=Platform.WEB, mode="prompt"))
    assert len(events) == 1 and events[0].status == 503
    assert (
        events[0].message.startswith("The model could not answer:")
        and "could not be reached" in events[0].message
    )
    assert not Answer.objects.exists()


def test_a_bad_mode_ends_the_stream_as_a_400(handbook):
    events = list(AnswerStream(ONCALL_QUESTION, platform=Platform.WEB, mode="poetry"))
    assert events == [Failed(400, events[0].message)] and "Unknown mode 'poetry'" in events[0].message


def test_the_answer_is_recorded_when_the_reader_stops_after_the_first_delta(handbook):
    stream = AnswerStream(ONCALL_QUESTION, platform=Platform.WEB, mode="rag")
    reading = iter(stream)
    first = next(reading)
    reading.close()  # the client went away
    outcome = stream.wait(timeout=120)
    assert isinstance(first, Delta) and isinstance(outcome, Done)
    recorded = Answer.objects.get()
    assert outcome.answer == recorded and recorded.text.startswith(first.text.strip())


def test_every_error_has_one_status_and_only_the_unexpected_ones_are_logged_with_a_traceback(caplog):
    caplog.set_level(logging.WARNING, logger="console.conversations.streaming")
    assert failure_for(answering.ChannelDisabled("The bot is switched off in web:.")) == Failed(
        400, "The bot is switched off in web:."
    )
    assert failure_for(ValueError("The question is empty.")) == Failed(400, "The question is empty.")
    assert failure_for(answering.AnswerFailed("no adapter")) == Failed(
        503, "The model could not answer: no adapter"
    )
    assert not [record for record in caplog.records if record.exc_info]
    bug = RuntimeError("a bug")
    try:
        raise bug
    except RuntimeError as error:
        assert failure_for(error) == Failed(500, "Answering failed; the server log has the details.")
    assert [record.exc_info[1] for record in caplog.records if record.exc_info] == [bug]
