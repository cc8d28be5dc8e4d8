"""Chat questions that are never lost: written down and queued before the platform is acknowledged.

A bot calls `take` on its acknowledgement path: the question becomes a `Question` row (unique per
platform event id) and an RQ job on the `answer` queue. Only then does the bot acknowledge; when
either step fails it does not (Slack then redelivers) or it tells the asker to try again. A
redelivered event finds its row: answered, or with a live job, it is left alone; a row whose job
died is queued again. Answer workers run `console.conversations.jobs.answer_question`, which
replies through the platform's `Replier` (registered by the bots app, so console never imports
bots). `sweep_questions` re-queues rows whose job died and, after ANSWER_ATTEMPTS tries, has the
asker told that this one could not be answered.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Callback, Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from console.conversations import answering
from console.conversations.models import Question
from console.conversations.pseudonyms import hash_id

logger = logging.getLogger(__name__)

QUEUE = "answer"
NOT_TAKEN = (
    "Sorry, I can't take questions right now: my database or job queue is unreachable. "
    "Please ask again in a few minutes."
)
SORRY = "Sorry, something went wrong while answering. Please try again in a minute."
GAVE_UP = "Sorry, I could not answer this one — please ask again."
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.CREATED}


class NotTaken(Exception):
    """The question could not be written down or queued; str() is for the asker."""


class Replier(Protocol):
    """How answers reach one platform: from an answer worker, through the platform's Web API."""

    def prepare(self, question: Question) -> None:
        """Before answering: e.g. post the placeholder, learn whether the channel is shared."""

    def deliver(self, question: Question, answer: Any) -> None:
        """Post the answer (replacing the placeholder, if any) and attach its message id."""

    def withdraw(self, question: Question) -> None:
        """The channel was switched off meanwhile: take the placeholder back."""

    def apologise(self, question: Question, text: str) -> None:
        """Tell the asker `text` where the answer would have gone."""


_repliers: dict[str, Callable[[], Replier]] = {}


def register_replier(platform: str, factory: Callable[[], Replier]) -> None:
    """Called by the bots app at start-up, one factory per platform."""
    _repliers[platform] = factory


def replier_for(platform: str) -> Replier:
    try:
        return _repliers[platform]()
    except KeyError:
        raise LookupError(f"No replier is registered for platform {platform!r}.") from None


@lru_cache(maxsize=4)
def _ack_connection(url: str, timeout: float) -> Redis:
    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def ack_connection() -> Redis:
    """Redis for the acknowledgement path: ACK_REDIS_TIMEOUT per call and no retries, so a Redis
    that stopped answering costs half a second, not the platform's whole deadline."""
    return _ack_connection(settings.REDIS_URL, settings.ACK_REDIS_TIMEOUT)


def answer_queue(connection: Redis | None = None) -> Queue:
    """The `answer` queue; workers use the settings' connection, the ack path `ack_connection()`."""
    if connection is None:
        import django_rq

        connection = django_rq.get_connection(QUEUE)
    return Queue(QUEUE, connection=connection, default_timeout=settings.ANSWER_JOB_TIMEOUT)


def take(platform: str, event_id: str, *, user: str = "", **fields: Any) -> Question | None:
    """Write a question down and queue it; call before acknowledging the platform.

    Returns the row when it was queued (new, or a redelivery whose job had died), None for a
    redelivery of a question that is answered or still has a live job. Raises
    answering.ChannelDisabled when the bot is off in the channel, NotTaken when PostgreSQL or
    Redis failed (a new row is then removed again, so the platform's retry starts afresh).
    `fields` are Question fields (channel, text, thread, ...); `user` is stored hashed.
    """
    connection = ack_connection()
    try:
        if not answering.channel_config(platform, fields.get("channel", "")).enabled:
            raise answering.ChannelDisabled(f"The bot is switched off in {platform}:{fields.get('channel')}.")
        question, created = Question.objects.get_or_create(
            platform=platform,
            event_id=event_id,
            defaults={**fields, "asker": hash_id(platform, user), "job_id": _new_job_id()},
        )
    except DatabaseError as error:
        logger.error("question %s:%s not taken: database unavailable (%s)", platform, event_id, error)
        raise NotTaken(NOT_TAKEN) from error
    try:
        if not created:
            if not question.is_open or job_alive(question, connection):
                logger.info("question %s (%s): redelivery ignored", question.pk, question.status)
                return None
            question.queued(_new_job_id())
        _enqueue(question, connection)
    except (RedisError, DatabaseError) as error:
        logger.error("question %s:%s not queued (%s)", platform, event_id, error)
        if created:
            Question.objects.filter(pk=question.pk).delete()
        raise NotTaken(NOT_TAKEN) from error
    logger.info("question %s (%s:%s) queued as job %s", question.pk, platform, event_id, question.job_id)
    return question


def _new_job_id() -> str:
    return f"answer-{uuid.uuid4().hex}"


def _enqueue(question: Question, connection: Redis) -> None:
    from console.conversations import jobs

    answer_queue(connection).enqueue(
        jobs.answer_question,
        question.pk,
        job_id=question.job_id,
        on_failure=Callback(jobs.answer_question_failed),
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
    )


def requeue(question: Question, connection: Redis | None = None) -> None:
    """Queue a fresh job for an open question whose job is gone (the worker died, Redis lost it)."""
    question.queued(_new_job_id())
    _enqueue(question, connection or answer_queue().connection)
    logger.warning(
        "question %s re-queued as job %s (attempts so far: %d)",
        question.pk,
        question.job_id,
        question.attempts,
    )


def job_alive(question: Question, connection: Redis) -> bool:
    """Whether the question's job still waits in the queue or runs in a live worker.

    A started job whose worker stopped heartbeating is first handed to RQ's abandoned-job
    clean-up (which runs its failure callback), so it counts as dead.
    """
    if not question.job_id:
        return False
    try:
        job = Job.fetch(question.job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status in WAITING:
        return True
    if status != JobStatus.STARTED:
        return False
    StartedJobRegistry(QUEUE, connection=connection).cleanup()
    if job.get_status() == JobStatus.STARTED:
        return True
    question.refresh_from_db()  # the clean-up's failure callback may have queued a fresh job
    return question.job_id != job.id and job_alive(question, connection)


def give_up(question: Question, reason: str) -> None:
    """After ANSWER_ATTEMPTS tries: the asker is told, the row is failed with the reason."""
    try:
        replier_for(question.platform).apologise(question, GAVE_UP)
    except Exception:
        logger.exception("question %s: could not tell the asker it was given up", question.pk)
    question.failed(reason)
    logger.error("question %s given up after %d attempts: %s", question.pk, question.attempts, reason)


def retry_or_give_up(question: Question, reason: str, connection: Redis | None = None) -> None:
    """An open question whose job died: queued again while attempts are left, else given up."""
    if question.attempts >= settings.ANSWER_ATTEMPTS:
        give_up(question, reason)
    else:
        requeue(question, connection)


def sweep_questions(older_than: timedelta | None = None) -> dict[str, int]:
    """Open questions untouched for SWEEP_AFTER_SECONDS whose job is not alive: re-queued, or
    given up (the asker told) after ANSWER_ATTEMPTS. Counts by outcome."""
    older_than = older_than if older_than is not None else timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    connection = answer_queue().connection
    counts = {"requeued": 0, "given_up": 0, "alive": 0}
    stale = Question.objects.filter(
        status__in=[Question.Status.PENDING, Question.Status.ANSWERING],
        updated_at__lt=timezone.now() - older_than,
    )
    for question in stale.order_by("pk"):
        if job_alive(question, connection):
            counts["alive"] += 1
            continue
        question.refresh_from_db()
        if not question.is_open:  # the clean-up's failure callback gave it up
            continue
        gives_up = question.attempts >= settings.ANSWER_ATTEMPTS
        retry_or_give_up(question, "its answer job died or was lost", connection)
        counts["given_up" if gives_up else "requeued"] += 1
    return counts
