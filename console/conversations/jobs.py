"""RQ entry points for the `answer` queue: answer a written-down chat question and reply.

Answer workers are the only processes that load the generator; bot gateways and web workers
only write questions down (console.conversations.questions). Jobs take ids and re-read rows.
"""

from __future__ import annotations

import logging
from types import TracebackType

from django.db import DatabaseError, connections
from redis import Redis
from rq import get_current_job
from rq.job import Job

from console.conversations import answering, questions
from console.conversations.models import Question
from console.conversations.threads import thread_history
from console.workers import failure_reason

logger = logging.getLogger(__name__)


def answer_question(question_id: int) -> str:
    """Answer one question and reply on its platform; the question's final status.

    Idempotent: only the question's current job answers, and only while it is pending, so a
    duplicate or stale job returns without a word. An error the asker should hear about
    (the model failed) is answered with an apology; a database outage is raised, leaving the
    question open for the failure callback or the sweeper.
    """
    question = Question.objects.filter(pk=question_id).first()
    current = get_current_job()
    if question is None or (current and current.id != question.job_id) or not question.claim():
        logger.info("question %s: job %s has nothing to do", question_id, current and current.id)
        return question.status if question else "missing"
    replier = questions.replier_for(question.platform)
    try:
        replier.prepare(question)
        thread = question.placeholder if question.starts_thread else question.thread
        reply = answering.answer(
            question.text,
            platform=question.platform,
            channel=question.channel,
            workspace=question.workspace,
            thread=thread,
            asker=question.asker,
            history=thread_history(question.platform, question.channel, thread),
            mode=question.mode or None,
            shared_channel=question.shared,
        )
        replier.deliver(question, reply)
    except answering.ChannelDisabled:
        replier.withdraw(question)
        question.failed("the bot was switched off in the channel")
    except DatabaseError:
        raise
    except Exception as error:
        logger.exception("question %s: answering failed", question.pk)
        _apologise(replier, question, questions.SORRY)
        question.failed(f"{type(error).__name__}: {error}")
    else:
        question.answered(reply)
        logger.info("question %s answered as answer %s", question.pk, reply.pk)
    finally:
        connections.close_all()
    return question.status


def _apologise(replier: questions.Replier, question: Question, text: str) -> None:
    try:
        replier.apologise(question, text)
    except Exception:
        logger.exception("question %s: could not apologise to the asker", question.pk)


def answer_question_failed(
    job: Job,
    connection: Redis,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> None:
    """on_failure callback (the job raised, timed out, or its process died): the question is
    queued again while attempts are left, else the asker is told it could not be answered."""
    question = Question.objects.filter(pk=job.args[0]).first()
    if question is None or not question.is_open or question.job_id != job.id:
        return
    questions.retry_or_give_up(question, failure_reason(exc_type, exc_value), connection)
