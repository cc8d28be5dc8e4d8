"""No acknowledged Slack question is lost: written down and queued before the ack (#12 section 4).

The real bolt App behind a live /slack/events, Slack's Web API played by FakeSlack, the real
PostgreSQL and Redis, and real RQ workers (in-process burst workers, or an `rqworker` process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from django.core.management import call_command
from django.db import connections

from console.conversations import questions
from console.conversations.models import Answer, Question
from tests.bots.test_slack import SECRET, SlackEvents, answered, handbook  # noqa: F401 (fixture)
from tests.subprocesses import database_url_for_tests, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
QUESTION_AFTER = "Who approves expenses?"
LAST_RETRY = {"X-Slack-Retry-Num": "3", "X-Slack-Retry-Reason": "http_error"}


@pytest.fixture
def slack(settings, live_server, fake_slack, use_tiny_llm, handbook, answer_queue):  # noqa: F811
    """/slack/events with no answer worker running: each test runs workers when it wants."""
    from bots.slack import replies

    replies._shared_channels.clear()
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.SLACK_API_URL = fake_slack.url
    settings.SWEEP_AFTER_SECONDS = 0
    return SlackEvents(f"{live_server.url}/slack/events", fake_slack)


@pytest.fixture
def fake_slack():
    from tests.bots.slack_fake import FakeSlack

    fake = FakeSlack()
    yield fake
    fake.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def black_hole():
    """A TCP port that accepts connections (the kernel's backlog) but never answers a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


@contextlib.contextmanager
def database_down():
    """New PostgreSQL connections (every request thread's) go to a port nobody listens on."""
    from django.db import connections

    params = connections["default"].settings_dict  # the dict every thread's connection is made from
    saved = params["HOST"], params["PORT"]
    params["HOST"], params["PORT"] = "127.0.0.1", str(free_port())
    try:
        yield
    finally:
        params["HOST"], params["PORT"] = saved


def updates_with_answers(fake) -> list:
    return [c for c in fake.calls_to("chat.update") if c.args.get("blocks")]


def test_question_is_written_down_and_queued_before_the_ack(
    slack, fake_slack, answer_queue, run_answer_worker
):
    response, ts = slack.mention()
    assert response.status_code == 200
    question = Question.objects.get()  # already there when Slack got its 200
    assert (question.status, question.channel, question.thread) == ("pending", "C0OPS", ts)
    assert question.asker and "U0ALICE" not in question.asker  # hashed, as answers are
    assert answer_queue.job_ids == [question.job_id]
    fake_slack.wait_for("chat.postMessage")  # the placeholder, after the ack
    assert Answer.objects.count() == 0  # nothing answers in the web process

    run_answer_worker()
    question.refresh_from_db()
    assert question.status == "answered" and question.answer == Answer.objects.get()
    (update,) = updates_with_answers(fake_slack)
    assert update.args["ts"] == question.placeholder == question.answer.message_id


def test_retries_of_a_live_or_answered_question_are_not_queued_again(
    slack, fake_slack, answer_queue, run_answer_worker
):
    body = slack.event_body(slack.mention_event())
    slack.post(body, "application/json")
    assert slack.post(body, "application/json", headers=RETRY).status_code == 200  # job still queued
    assert answer_queue.count == 1
    run_answer_worker()
    assert slack.post(body, "application/json", headers=LAST_RETRY).status_code == 200  # answered
    assert answer_queue.count == 0
    run_answer_worker()
    assert len(updates_with_answers(fake_slack)) == 1 and Answer.objects.count() == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_a_retried_event_whose_job_was_lost_is_answered_once(
    slack, fake_slack, answer_queue, run_answer_worker
):
    body = slack.event_body(slack.mention_event())
    slack.post(body, "application/json")
    fake_slack.wait_for("chat.postMessage")
    answer_queue.connection.delete(f"rq:job:{Question.objects.get().job_id}")  # Redis lost it
    answer_queue.empty()
    assert slack.post(body, "application/json", headers=RETRY).status_code == 200
    assert answer_queue.count == 1
    run_answer_worker()
    assert len(updates_with_answers(fake_slack)) == 1 and Answer.objects.count() == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the first placeholder was reused


def test_sweep_requeues_a_question_whose_job_died_and_gives_up_after_the_attempts(
    slack, fake_slack, answer_queue, run_answer_worker, settings
):
    settings.ANSWER_ATTEMPTS = 2
    slack.mention()
    fake_slack.wait_for("chat.postMessage")
    question = Question.objects.get()
    answer_queue.empty()  # the job is gone (a Redis restart without persistence)
    call_command("sweep")
    question.refresh_from_db()
    assert question.status == "pending" and answer_queue.job_ids == [question.job_id]
    run_answer_worker()
    assert Question.objects.get().status == "answered" and len(updates_with_answers(fake_slack)) == 1

    slack.mention()  # a second question, whose worker dies twice
    fake_slack.wait_for("chat.postMessage", 2)
    # The listener records its placeholder just after posting it: wait for the row to say so.
    assert wait_until(lambda: Question.objects.latest("pk").placeholder, timeout=10)
    second = Question.objects.latest("pk")
    Question.objects.filter(pk=second.pk).update(status="answering", attempts=2)
    answer_queue.empty()
    call_command("sweep")
    second.refresh_from_db()
    assert second.status == "failed" and "died" in second.error
    (apology,) = [c for c in fake_slack.calls_to("chat.update") if c.args.get("ts") == second.placeholder]
    assert apology.args["text"] == questions.GAVE_UP


def test_sweep_leaves_a_question_with_a_live_job_alone(slack, fake_slack, answer_queue):
    slack.mention()
    question = Question.objects.get()
    call_command("sweep")
    assert Question.objects.get().job_id == question.job_id and answer_queue.count == 1


def test_redis_down_means_no_ack_so_slack_retries_and_the_retry_is_answered(
    slack, fake_slack, settings, answer_queue, run_answer_worker
):
    body = slack.event_body(slack.mention_event())
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: refused at once
    refused = slack.post(body, "application/json")
    assert refused.status_code == 500
    assert Question.objects.count() == 0 and fake_slack.calls_to("chat.postMessage") == []
    settings.REDIS_URL = redis_url
    assert slack.post(body, "application/json", headers=RETRY).status_code == 200
    run_answer_worker()
    assert len(updates_with_answers(fake_slack)) == 1 and Answer.objects.count() == 1


def test_a_black_holed_redis_does_not_hold_the_ack_past_slacks_deadline(slack, fake_slack, settings):
    with black_hole() as url:
        settings.REDIS_URL = url
        started = time.monotonic()
        response, _ = slack.mention()
        took = time.monotonic() - started
    assert response.status_code == 500 and took < 2.0, took
    assert Question.objects.count() == 0


def test_slash_command_with_redis_down_is_told_to_ask_again(slack, fake_slack, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = slack.command("How do I get VPN access?")
    assert response.status_code == 200 and questions.NOT_TAKEN in response.text
    assert Question.objects.count() == 0 and fake_slack.calls_to("chat.postMessage") == []


def test_database_down_is_retried_by_slack_and_the_last_retry_is_told_politely(slack, fake_slack):
    body = slack.event_body(slack.mention_event())
    with database_down():
        first = slack.post(body, "application/json")
        last = slack.post(body, "application/json", headers=LAST_RETRY)
    assert first.status_code == 500  # not acknowledged: Slack delivers it again
    assert last.status_code == 200  # Slack would not retry again: the asker is told instead
    (told,) = fake_slack.wait_for("chat.postMessage")
    assert told.args["text"] == questions.NOT_TAKEN and told.args["thread_ts"]
    assert Question.objects.count() == 0


def worker_env(settings, fake_slack, tiny_llm) -> dict[str, str]:
    """The environment of an `rqworker answer` subprocess: the tests' servers, the tiny model
    generating for seconds (so it is killed in the middle), the fake Slack."""
    return dict(
        os.environ,
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        BASE_MODEL=str(tiny_llm),
        GENERATOR="local",
        GENERATION_MAX_NEW_TOKENS="3000",
        GENERATION_REPETITION_PENALTY="1.0",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_API_URL=fake_slack.url,
    )


@pytest.mark.slow
def test_an_answer_worker_killed_mid_generation_is_answered_once_after(
    slack, fake_slack, settings, answer_queue, use_tiny_llm
):
    """`rqworker answer` (forking, console.workers.Worker) loses its work-horse to SIGKILL."""
    env = worker_env(settings, fake_slack, use_tiny_llm)
    slack.mention()
    question = Question.objects.get()
    job_id = question.job_id
    worker = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "rqworker", "answer"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: Question.objects.get().status == "answering", timeout=120)
        time.sleep(1.0)  # loading the model or generating
        for horse in psutil.Process(worker.pid).children():
            horse.send_signal(signal.SIGKILL)
        # the worker's failure callback queues the question again, and the worker answers it
        assert wait_until(lambda: Question.objects.get().status == "answered", timeout=180)
        # ... and goes on answering: the database connection that callback opened in the worker
        # is not handed on to the next work-horses (the first to close it broke every later one)
        slack.mention(QUESTION_AFTER)
        slack.mention(QUESTION_AFTER)
        assert wait_until(lambda: Question.objects.filter(status="answered").count() == 3, timeout=180)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    question.refresh_from_db()
    assert question.attempts == 2 and question.job_id != job_id
    assert len(updates_with_answers(fake_slack)) == 3 and Answer.objects.count() == 3
    assert len(fake_slack.calls_to("chat.postMessage")) == 3  # one placeholder each, the first reused


@pytest.mark.slow
def test_a_killed_answer_worker_is_replaced_and_its_question_answered_once_at_once(
    slack, fake_slack, settings, answer_queue, use_tiny_llm
):
    """`runall`'s answer worker (console.workers.AnswerWorker) answers in its own process, so a
    SIGKILL takes the whole worker; the one started in its place finds it dead and the question
    is answered again straight away, not when the dead worker's heartbeat runs out (ANSWER_JOB_TIMEOUT
    plus a minute)."""
    env = worker_env(settings, fake_slack, use_tiny_llm)
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "rqworker", "answer"]
    command += ["--worker-class", "console.workers.AnswerWorker"]
    slack.mention()
    question = Question.objects.get()
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: Question.objects.get().status == "answering", timeout=120)
        assert psutil.Process(first.pid).children() == [], "the job runs in the worker's own process"
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    env["GENERATION_MAX_NEW_TOKENS"] = "8"
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: Question.objects.get().status == "answered", timeout=120)
    finally:
        second.terminate()
        second.wait(timeout=60)
    question.refresh_from_db()
    assert question.attempts == 2
    assert len(updates_with_answers(fake_slack)) == 1 and Answer.objects.count() == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the placeholder, reused


def test_listener_and_worker_racing_for_the_placeholder_leave_one(slack, fake_slack, answer_queue):
    from bots.slack.replies import ensure_placeholder, web_client

    question = questions.take("slack", "EvRACE", channel="C0OPS", text="Who is on call?", thread="1.2")
    assert question is not None
    copies = [Question.objects.get(pk=question.pk) for _ in range(4)]
    won = []

    def post(question: Question) -> None:
        try:
            won.append(ensure_placeholder(web_client(), question))
        finally:
            connections.close_all()  # this thread's own

    threads = [threading.Thread(target=post, args=(q,)) for q in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(won)) == 1 == len({Question.objects.get().placeholder, *won})
    posted = len(fake_slack.calls_to("chat.postMessage"))
    assert posted - len(fake_slack.calls_to("chat.delete")) == 1
