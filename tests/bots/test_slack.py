"""The Slack bot end to end: signed requests to a live /slack/events, Slack's Web API played by FakeSlack.

The real slack-bolt App and slack_sdk WebClient run unchanged; only Slack's servers are fake.
Redis (event de-duplication) and PostgreSQL are the real test ones, so event ids are unique per run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests
from slack_sdk.signature import SignatureVerifier

from bots.slack import blocks as slack_blocks
from console.conversations import questions
from console.conversations.models import Answer, ChannelSettings, Feedback, Question
from console.training.models import TrainingPair
from tests.bots.slack_fake import BOT_USER, TEAM, FakeSlack
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db(transaction=True)  # the live server answers from its own threads

SECRET = "test-signing-secret"
QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
ONCALL_URL = "https://wiki.example.com/oncall.md"


class SlackEvents:
    """Slack's side of /slack/events: signed event, command and interaction requests."""

    def __init__(self, url: str, fake: FakeSlack, secret: str = SECRET):
        self.url, self.fake, self.secret = url, fake, secret
        self._ts = 1700000100

    def post(self, body: str, content_type: str, *, signature=None, timestamp=None, headers=None):
        timestamp = str(int(time.time())) if timestamp is None else str(timestamp)
        if signature is None:
            signature = SignatureVerifier(self.secret).generate_signature(timestamp=timestamp, body=body)
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, **(headers or {})}
        if signature:
            sent["X-Slack-Signature"] = signature
        data = body if isinstance(body, bytes) else body.encode()
        return requests.post(self.url, data=data, headers=sent, timeout=10)

    def next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000100"

    def event_body(self, event: dict, event_id: str | None = None) -> str:
        return json.dumps(
            {
                "token": "legacy",
                "team_id": TEAM,
                "api_app_id": "A0TEST",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}",
                "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
            }
        )

    def event(self, event: dict, **kwargs):
        return self.post(self.event_body(event), "application/json", **kwargs)

    def mention_event(
        self, text: str = QUESTION, *, channel="C0OPS", user="U0ALICE", ts=None, thread_ts=None
    ):
        ts = ts or self.next_ts()
        event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}", "ts": ts}
        event.update(
            channel=channel, team=TEAM, event_ts=ts, **({"thread_ts": thread_ts} if thread_ts else {})
        )
        return event

    def mention(self, text: str = QUESTION, **kwargs):
        event = self.mention_event(text, **kwargs)
        return self.event(event), event["ts"]

    def reaction(
        self, reaction: str, item_ts: str, *, user: str, channel="C0OPS", item_user=BOT_USER, removed=False
    ):
        item = {"type": "message", "channel": channel, "ts": item_ts}
        kind = "reaction_removed" if removed else "reaction_added"
        event = {"type": kind, "user": user, "reaction": reaction, "item": item}
        return self.event({**event, "item_user": item_user, "event_ts": self.next_ts()})

    def command(self, text: str, *, channel="C0OPS", user="U0ALICE"):
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": "/ask",
            "text": text,
            "response_url": self.fake.response_url,
            "trigger_id": "1.2.trigger",
            "api_app_id": "A0TEST",
        }
        return self.post(urlencode(form), "application/x-www-form-urlencoded")

    def interaction(self, payload: dict):
        payload = {"team": {"id": TEAM}, "api_app_id": "A0TEST", "token": "legacy", **payload}
        return self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def click(self, action_id: str, answer_id: int, *, user: str, message_ts="1700000000.000001"):
        return self.interaction(
            {
                "type": "block_actions",
                "user": {"id": user, "team_id": TEAM},
                "trigger_id": f"trigger-{uuid.uuid4().hex[:8]}",
                "channel": {"id": "C0OPS"},
                "container": {"type": "message", "message_ts": message_ts, "channel_id": "C0OPS"},
                "message": {"ts": message_ts, "thread_ts": "1700000100.000100"},
                "actions": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "block_id": f"votes-{answer_id}",
                        "value": str(answer_id),
                    }
                ],
            }
        )


@pytest.fixture
def fake_slack():
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def handbook(db, collection, add_document):
    add_document(collection, ONCALL_URL, ONCALL_MD)
    add_document(collection, "expenses.md", EXPENSES_MD)
    return collection


@pytest.fixture
def slack(settings, live_server, fake_slack, use_tiny_llm, handbook, answer_worker):
    from bots.slack import replies

    replies._shared_channels.clear()  # what conversations.info said about another test's channels
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.SLACK_API_URL = fake_slack.url
    yield SlackEvents(f"{live_server.url}/slack/events", fake_slack)
    wait_until(lambda: resolved(fake_slack), timeout=30)  # no answer still running into the next test


def wait_until(condition, *, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s"
        time.sleep(0.02)


def resolved(fake: FakeSlack) -> bool:
    """Every "Thinking…" placeholder has been updated or deleted."""
    placeholders = [
        c for c in fake.calls_to("chat.postMessage") if slack_blocks.THINKING in c.args.get("text", "")
    ]
    return len(fake.calls_to("chat.update")) + len(fake.calls_to("chat.delete")) >= len(placeholders)


def answered(fake: FakeSlack, count: int = 1, *, timeout: float = 20.0) -> list:
    """The answers posted (placeholders updated with blocks), once there are `count`."""
    return fake.wait_for("chat.update", count, timeout=timeout, where=lambda c: c.args.get("blocks"))


def block_types(call) -> list[str]:
    return [block["type"] for block in call.args["blocks"]]


def test_mention_gets_one_threaded_reply_with_sources_and_buttons(slack, fake_slack):
    response, ts = slack.mention()
    assert response.status_code == 200
    (update,) = answered(fake_slack)
    (placeholder,) = fake_slack.calls_to("chat.postMessage")
    assert placeholder.args["thread_ts"] == ts and placeholder.args["channel"] == "C0OPS"
    assert update.args["ts"] == placeholder.response["ts"]
    answer = Answer.objects.get()
    assert answer.platform == "slack" and answer.thread == ts and answer.question == QUESTION
    assert answer.message_id == update.args["ts"]
    assert block_types(update)[-2:] == ["context", "actions"]
    sources = update.args["blocks"][-2]["elements"][0]["text"]
    assert f"<{ONCALL_URL}|" in sources and "Sources" in sources
    buttons = update.args["blocks"][-1]["elements"]
    assert [b["action_id"] for b in buttons] == [slack_blocks.VOTE_UP, slack_blocks.VOTE_DOWN]
    assert {b["value"] for b in buttons} == {str(answer.pk)}


def test_retried_event_gets_one_reply(slack, fake_slack):
    body = slack.event_body(slack.mention_event(ts="1700000200.000100"))
    first = slack.post(body, "application/json")
    retries = [
        slack.post(
            body,
            "application/json",
            headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"},
        )
        for n in (1, 2, 3)
    ]
    assert [r.status_code for r in [first, *retries]] == [200] * 4
    answered(fake_slack)
    time.sleep(0.5)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert Answer.objects.count() == 1


def test_first_delivery_is_answered_even_when_it_is_a_retry(slack, fake_slack):
    body = slack.event_body(slack.mention_event(ts="1700000300.000100"))
    response = slack.post(
        body, "application/json", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
    )
    assert response.status_code == 200
    answered(fake_slack)
    assert Answer.objects.count() == 1


@pytest.mark.parametrize(
    "signature, age",
    [("v0=" + "0" * 64, 0), ("", 0), (None, 6 * 60)],
    ids=["wrong", "missing", "stale"],
)
def test_bad_signature_gets_401_and_does_nothing(slack, fake_slack, signature, age):
    body = slack.event_body(
        {
            "type": "app_mention",
            "user": "U0ALICE",
            "text": f"<@{BOT_USER}> {QUESTION}",
            "ts": "1700000400.000100",
            "channel": "C0OPS",
            "team": TEAM,
        }
    )
    response = slack.post(body, "application/json", signature=signature, timestamp=int(time.time()) - age)
    assert response.status_code == 401
    time.sleep(0.3)
    assert fake_slack.calls == []
    assert Answer.objects.count() == 0


MALFORMED_BODIES = {
    "not JSON": "{",
    "a JSON list": "[]",
    "JSON null": "null",
    "a JSON string": '"app_mention"',
    "an event callback without an event": '{"type": "event_callback", "event_id": "Ev1"}',
    "an event that is a string": '{"type": "event_callback", "event": "app_mention"}',
    "a mention whose channel is a number": '{"type": "event_callback", "event": {"type": "app_mention", "channel": 5}}',
    "a mention whose user is a number": '{"type": "event_callback", "event": {"type": "app_mention", "user": 5}}',
}


@pytest.fixture
def bare_slack(settings, live_server, fake_slack):
    """/slack/events with no model and no answer worker: for requests that must never be answered."""
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.SLACK_API_URL = fake_slack.url
    return SlackEvents(f"{live_server.url}/slack/events", fake_slack)


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_a_signed_body_that_is_not_a_json_object_gets_400(bare_slack, fake_slack, body):
    response = bare_slack.post(body, "application/json")
    assert response.status_code == 400 and "Malformed request body" in response.text
    form = bare_slack.post("payload=%5B1%5D", "application/x-www-form-urlencoded")  # payload: a list
    assert form.status_code == 400
    assert fake_slack.calls == [] and Question.objects.count() == 0


def test_a_body_that_is_not_utf8_cannot_be_verified_and_gets_401(bare_slack, fake_slack):
    body, timestamp = b"\xff\xfe{}", str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    response = bare_slack.post(
        body, "application/json", signature=f"v0={digest.hexdigest()}", timestamp=timestamp
    )
    assert response.status_code == 401 and fake_slack.calls == []


@pytest.mark.parametrize("body", [*MALFORMED_BODIES.values(), b"\xff"])
@pytest.mark.parametrize("timestamp", ["abc", "1.5", ""], ids=["word", "decimal", "empty"])
def test_a_timestamp_that_is_not_a_number_gets_401_whatever_the_body(bare_slack, fake_slack, body, timestamp):
    response = bare_slack.post(body, "application/json", signature="v0=" + "0" * 64, timestamp=timestamp)
    assert response.status_code == 401
    assert fake_slack.calls == []


def _mention(**changes) -> dict:
    event = {"type": "app_mention", "user": "U0ALICE", "text": f"<@{BOT_USER}> {QUESTION}"}
    event |= {"ts": "1700000500.000100", "channel": "C0OPS", "team": TEAM}
    return {key: value for key, value in (event | changes).items() if value is not None}


MALFORMED_EVENTS = {
    "a mention without channel": _mention(channel=None),
    "a mention without ts": _mention(ts=None),
    "a mention whose text is a number": _mention(text=42),
    "a mention whose channel is a list": _mention(channel=["C0OPS"]),
    "a mention whose thread_ts is an object": _mention(thread_ts={"ts": "1"}),
    "a DM without channel": {
        "type": "message",
        "channel_type": "im",
        "user": "U0ALICE",
        "text": "Hi?",
        "ts": "1.2",
    },
    "a reaction whose item is a string": {
        "type": "reaction_added",
        "user": "U0ALICE",
        "reaction": "+1",
        "item": "x",
    },
    "a reaction that is a number": {"type": "reaction_added", "user": "U0ALICE", "reaction": 1, "item": {}},
}


@pytest.mark.parametrize("event", MALFORMED_EVENTS.values(), ids=MALFORMED_EVENTS.keys())
def test_a_signed_but_malformed_event_is_acknowledged_and_ignored(bare_slack, fake_slack, event):
    """Signed, so Slack sent it: a 200 keeps Slack from sending the same event three times more,
    which would not help; nothing is taken, posted or answered."""
    body = json.loads(bare_slack.event_body({}))
    body["event"] = event
    response = bare_slack.post(json.dumps(body), "application/json")
    assert response.status_code == 200
    time.sleep(0.3)
    assert [c.method for c in fake_slack.calls if c.method != "auth.test"] == []
    assert Question.objects.count() == 0


def test_url_verification_challenge_is_answered(slack):
    body = json.dumps(
        {
            "token": "legacy",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    response = slack.post(body, "application/json")
    assert (
        response.status_code == 200
        and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text
    )


def test_button_votes_record_one_vote_per_voter(slack, fake_slack):
    slack.mention()
    answered(fake_slack)
    answer = Answer.objects.get()
    assert slack.click(slack_blocks.VOTE_UP, answer.pk, user="U0ALICE").status_code == 200
    wait_until(lambda: Feedback.objects.filter(value=1).count() == 1)
    slack.click(slack_blocks.VOTE_DOWN, answer.pk, user="U0ALICE")
    wait_until(lambda: Feedback.objects.filter(value=-1).count() == 1)
    assert Feedback.objects.count() == 1
    (opened,) = fake_slack.wait_for("views.open")
    assert opened.args["view"]["callback_id"] == slack_blocks.FEEDBACK_FORM
    assert json.loads(opened.args["view"]["private_metadata"]) == {"answer": answer.pk}
    slack.click(slack_blocks.VOTE_UP, answer.pk, user="U0BOB")
    wait_until(lambda: Feedback.objects.count() == 2)
    assert sorted(Feedback.objects.values_list("value", flat=True)) == [-1, 1]
    assert fake_slack.wait_for("chat.postEphemeral", 2)[0].args["user"] == "U0ALICE"


def test_reactions_on_the_bots_reply_are_votes_but_not_from_bots(slack, fake_slack):
    slack.mention()
    (update,) = answered(fake_slack)
    reply_ts = update.args["ts"]
    fake_slack.bots.add("U0OTHERBOT")
    slack.reaction("+1", reply_ts, user=BOT_USER)  # the bot's own
    slack.reaction("thumbsup", reply_ts, user="U0OTHERBOT")
    slack.reaction("+1", "1700000999.000100", user="U0ALICE", item_user="U0ALICE")  # not the bot's reply
    slack.reaction("tada", reply_ts, user="U0ALICE")
    fake_slack.wait_for("users.info")
    slack.reaction("+1", reply_ts, user="U0ALICE")
    wait_until(lambda: Feedback.objects.count() == 1)
    slack.reaction("thumbsdown", reply_ts, user="U0ALICE")
    wait_until(lambda: Feedback.objects.filter(value=-1).exists())
    slack.reaction("thumbsup::skin-tone-3", reply_ts, user="U0BOB")
    wait_until(lambda: Feedback.objects.count() == 2)
    time.sleep(0.3)
    assert sorted(Feedback.objects.values_list("value", flat=True)) == [-1, 1]
    assert Feedback.objects.filter(answer=Answer.objects.get()).count() == 2


def test_removing_a_reaction_takes_the_vote_back_and_the_candidate_pair_follows(slack, fake_slack):
    slack.mention()
    (update,) = answered(fake_slack)
    reply_ts = update.args["ts"]
    slack.reaction("+1", reply_ts, user="U0ALICE")
    slack.reaction("+1", reply_ts, user="U0BOB")
    wait_until(lambda: TrainingPair.objects.filter(votes=2).exists())

    slack.reaction("thumbsdown", reply_ts, user="U0ALICE", removed=True)  # not the vote she cast
    slack.reaction("+1", reply_ts, user="U0ALICE", removed=True)
    wait_until(lambda: TrainingPair.objects.filter(votes=1).exists())
    assert list(Feedback.objects.values_list("value", flat=True)) == [1]

    slack.reaction("+1::skin-tone-2", reply_ts, user="U0BOB", removed=True)
    wait_until(lambda: not Feedback.objects.exists())
    wait_until(lambda: not TrainingPair.objects.exists())  # a candidate with no votes left goes


def submit_feedback_form(slack, answer_id: int, *, category="facts", reason="", better="", user="U0ALICE"):
    view = slack_blocks.feedback_form(answer_id)
    option = {"text": {"type": "plain_text", "text": category}, "value": category}
    state = {
        slack_blocks.CATEGORY_BLOCK: {
            slack_blocks.INPUT: {"type": "static_select", "selected_option": option}
        },
        slack_blocks.REASON_BLOCK: {slack_blocks.INPUT: {"type": "plain_text_input", "value": reason}},
        slack_blocks.BETTER_BLOCK: {slack_blocks.INPUT: {"type": "plain_text_input", "value": better}},
    }
    return slack.interaction(
        {
            "type": "view_submission",
            "user": {"id": user},
            "view": {**view, "id": "V1", "state": {"values": state}},
        }
    )


def test_thumbs_down_form_asks_a_category_and_a_better_answer_becomes_a_candidate(slack, fake_slack):
    slack.mention()
    answered(fake_slack)
    answer = Answer.objects.get()
    form = slack_blocks.feedback_form(answer.pk)
    [category] = [b for b in form["blocks"] if b["block_id"] == slack_blocks.CATEGORY_BLOCK]
    assert not category.get("optional") and category["element"]["type"] == "static_select"
    assert [o["value"] for o in category["element"]["options"]] == list(Feedback.Category.values)

    response = submit_feedback_form(
        slack, answer.pk, category="facts", reason="Wrong time limit", better="Within 5 minutes."
    )
    assert response.status_code == 200 and response.text == ""  # the form closes
    pair = TrainingPair.objects.get()
    assert pair.source == TrainingPair.Source.CORRECTION and pair.answer == "Within 5 minutes."
    assert pair.status == TrainingPair.Status.CANDIDATE  # a curator decides, not the chat user
    assert pair.origin_id == answer.pk and pair.question == QUESTION
    feedback = Feedback.objects.get()
    assert (feedback.value, feedback.category, feedback.reason) == (-1, "facts", "Wrong time limit")


def test_a_correction_beyond_the_daily_limit_is_refused_in_the_form(slack, fake_slack, settings):
    settings.CORRECTIONS_PER_DAY = 1
    slack.mention()
    slack.mention(f"{QUESTION} (again)")
    answered(fake_slack, 2)
    first, second = Answer.objects.order_by("pk")
    assert submit_feedback_form(slack, first.pk, better="Within 5 minutes.").text == ""
    refused = submit_feedback_form(slack, second.pk, category="missing", better="Within five minutes.")
    assert refused.status_code == 200
    body = refused.json()
    assert body["response_action"] == "errors"
    assert "already sent 1 better answers" in body["errors"][slack_blocks.BETTER_BLOCK]
    assert TrainingPair.objects.count() == 1
    assert Feedback.objects.get(answer=second).category == "missing"  # the vote itself still counts


def test_a_channel_shared_outside_the_workspace_reads_only_channel_scoped_collections(
    slack, fake_slack, add_document
):
    from console.knowledge.models import Collection

    workspace = Collection.objects.create(name="Ours", slug="ours", allowed_scopes=[f"slack:{TEAM}"])
    add_document(
        workspace, "pager-secret.md", "# Pager\n\nPagerDuty pages are acknowledged within 90 seconds."
    )
    fake_slack.shared_channels.add("C0CONNECT")
    slack.mention(channel="C0OPS")
    slack.mention(channel="C0CONNECT")  # conversations.info says is_ext_shared
    body = json.loads(slack.event_body(slack.mention_event(channel="C0GUESTS")))
    slack.post(json.dumps({**body, "is_ext_shared_channel": True}), "application/json")
    answered(fake_slack, 3)
    sources = {a.channel: {s["source"] for s in a.sources} for a in Answer.objects.all()}
    assert "pager-secret.md" in sources["C0OPS"]
    assert "pager-secret.md" not in sources["C0CONNECT"] | sources["C0GUESTS"]
    asked = {c.args["channel"] for c in fake_slack.calls_to("conversations.info")}
    assert "C0CONNECT" in asked and "C0GUESTS" not in asked  # the event's own flag needed no look-up


def test_slow_generation_still_acks_every_request_within_a_second(slack, fake_slack, settings):
    slack.mention()
    answered(fake_slack)
    earlier = Answer.objects.get()
    settings.GENERATION_MAX_NEW_TOKENS = 500  # the tiny model now takes about half a second per answer
    settings.GENERATION_REPETITION_PENALTY = 1.0

    def timed(sends) -> list[tuple[int, float]]:
        def one(send):
            started = time.monotonic()
            return send().status_code, time.monotonic() - started

        with ThreadPoolExecutor(len(sends)) as pool:
            return list(pool.map(one, sends))

    first_wave = timed([lambda: slack.mention()[0]] * 4)
    fake_slack.wait_for("chat.postMessage", 5)  # four slow answers queued or generating
    second_wave = timed(
        [
            lambda: slack.mention()[0],
            lambda: slack.command(QUESTION),
            lambda: slack.click(slack_blocks.VOTE_UP, earlier.pk, user="U0BOB"),
        ]
    )
    acked = time.monotonic()
    assert [status for status, _ in first_wave + second_wave] == [200] * 7
    assert max(seconds for _, seconds in first_wave + second_wave) < 1.0
    updates = answered(fake_slack, 7, timeout=60)
    assert max(update.at for update in updates) > acked  # the generator was still busy
    assert Answer.objects.filter(completion_tokens__gt=100).count() == 6
    wait_until(lambda: Feedback.objects.filter(answer=earlier).exists())


def test_twenty_concurrent_mentions_get_twenty_replies(slack, fake_slack):
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(lambda i: slack.mention(f"{QUESTION} ({i})", user=f"U0USER{i}")[0], range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20
    updates = answered(fake_slack, 20, timeout=60)
    assert len({u.args["ts"] for u in updates}) == 20
    assert Answer.objects.count() == 20
    assert len(set(Answer.objects.values_list("message_id", flat=True))) == 20


def test_rate_limited_reply_is_retried_after_retry_after(slack, fake_slack):
    fake_slack.rate_limit_once("chat.update", retry_after=1)
    slack.mention()
    limited, delivered = fake_slack.wait_for("chat.update", 2)
    assert delivered.at - limited.at >= 1.0
    assert delivered.args["ts"] == limited.args["ts"] and delivered.args["blocks"]


def test_follow_up_in_the_thread_carries_the_earlier_turns(slack, fake_slack):
    _, root = slack.mention()
    answered(fake_slack)
    slack.mention(thread_ts=root)
    answered(fake_slack, 2)
    first, follow_up = Answer.objects.order_by("created_at")
    assert follow_up.thread == first.thread == root
    assert fake_slack.calls_to("chat.postMessage")[1].args["thread_ts"] == root
    assert follow_up.prompt_tokens > first.prompt_tokens  # the same question, plus the earlier turn


def test_direct_messages_are_answered_and_bot_messages_ignored(slack, fake_slack):
    ts = slack.next_ts()
    message = {"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE", "team": TEAM}
    slack.event(
        {**message, "user": "U0OTHERBOT", "bot_id": "B0OTHER", "text": QUESTION, "ts": slack.next_ts()}
    )
    slack.event({**message, "text": QUESTION, "ts": ts})
    (update,) = answered(fake_slack)
    (placeholder,) = fake_slack.calls_to("chat.postMessage")
    assert placeholder.args["channel"] == "D0ALICE" and "thread_ts" not in placeholder.args
    assert Answer.objects.get().channel == "D0ALICE"


def test_ask_command_acks_at_once_and_answers_in_the_channel(slack, fake_slack):
    response = slack.command(QUESTION)
    assert response.status_code == 200
    (update,) = answered(fake_slack)
    (placeholder,) = fake_slack.calls_to("chat.postMessage")
    assert "thread_ts" not in placeholder.args
    assert "<@U0ALICE> asked" in update.args["blocks"][0]["elements"][0]["text"]
    assert Answer.objects.get().thread == update.args["ts"]  # follow-ups in its thread carry it


def test_switched_off_channel_gets_no_answer(slack, fake_slack):
    ChannelSettings.objects.create(platform="slack", channel_id="C0QUIET", enabled=False)
    slack.mention(channel="C0QUIET")
    slack.command(QUESTION, channel="C0QUIET")
    (told,) = fake_slack.wait_for("response_url")
    assert "switched off" in told.args["text"]
    time.sleep(0.3)
    assert fake_slack.calls_to("chat.postMessage") == [] and Answer.objects.count() == 0


def test_a_failed_answer_replaces_the_placeholder_with_an_apology(slack, fake_slack, settings):
    settings.GENERATOR, settings.LLM_API_URL = "openai", ""  # misconfigured: answering raises
    slack.mention()
    (update,) = fake_slack.wait_for("chat.update")
    assert update.args["text"] == questions.SORRY and Answer.objects.count() == 0


def test_socket_mode_app_answers_once_through_bolts_socket_mode_dispatch(slack, fake_slack):
    """Socket Mode: the same App, fed as SocketModeHandler feeds it (no signature; retries deduped)."""
    from slack_bolt.adapter.socket_mode.internals import run_bolt_app
    from slack_sdk.socket_mode.request import SocketModeRequest

    from bots.slack.app import build_app

    app = build_app(socket_mode=True)
    assert [c.method for c in fake_slack.calls] == ["auth.test"]  # the token is checked at start-up
    payload = json.loads(
        slack.event_body(
            {
                "type": "app_mention",
                "user": "U0ALICE",
                "text": f"<@{BOT_USER}> {QUESTION}",
                "ts": slack.next_ts(),
            }
            | {"channel": "C0OPS", "team": TEAM}
        )
    )
    for attempt in (None, 1):
        request = SocketModeRequest(
            type="events_api", envelope_id=f"env-{attempt}", payload=payload, retry_attempt=attempt
        )
        assert run_bolt_app(app, request).status == 200
    answered(fake_slack)
    time.sleep(0.3)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1 and Answer.objects.count() == 1


def test_runslackbot_explains_what_socket_mode_needs(settings):
    from django.core.management import CommandError, call_command

    settings.SLACK_BOT_TOKEN, settings.SLACK_APP_TOKEN = "xoxb-test-token", ""
    with pytest.raises(CommandError, match="SLACK_APP_TOKEN"):
        call_command("runslackbot")


def test_not_configured_slack_answers_503(client, settings):
    settings.SLACK_BOT_TOKEN = ""
    assert client.post("/slack/events", data="{}", content_type="application/json").status_code == 503


def test_first_delivery_claims_an_event_id_once():
    from console.conversations.deliveries import first_delivery

    event_id = f"Ev{uuid.uuid4().hex}"
    assert first_delivery("slack", event_id) is True
    assert first_delivery("slack", event_id) is False
    assert first_delivery("discord", event_id) is True
    assert first_delivery("slack", "") is True and first_delivery("slack", "") is True


# --- rendering and the manifest (no server needed) ------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_long_answers_split_within_slacks_limits():
    paragraph = "The primary on-call engineer acknowledges within five minutes. " * 40
    messages = slack_blocks.answer_messages(7, "\n\n".join([paragraph] * 80), [{"document": "On-call"}])
    assert len(messages) > 1
    assert all(len(m["blocks"]) <= slack_blocks.BLOCKS_PER_MESSAGE for m in messages)
    sections = [b for m in messages for b in m["blocks"] if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= slack_blocks.SECTION_LIMIT for b in sections)
    assert all(len(m["text"]) <= slack_blocks.SECTION_LIMIT for m in messages)
    assert [b["type"] for b in messages[-1]["blocks"]][-2:] == ["context", "actions"]
    assert all(b["type"] != "actions" for m in messages[:-1] for b in m["blocks"])
    assert "".join(b["text"]["text"] for b in sections).count("five minutes") == 40 * 80


@pytest.mark.django_db(transaction=False)
def test_markdown_becomes_mrkdwn_and_sources_become_links():
    text = "## Paging\n**Acknowledge** within 5 minutes [1], see [the runbook](https://wiki.example.com/rb).\n- a < b & c"
    assert slack_blocks.to_mrkdwn(text, frozenset({"wiki.example.com"})) == (
        "*Paging*\n*Acknowledge* within 5 minutes [1], see <https://wiki.example.com/rb|the runbook>.\n"
        "• a &lt; b &amp; c"
    )
    line = slack_blocks.sources_line(
        [
            {"number": 1, "document": "On-call rotation", "source": "https://wiki.example.com/oncall.md"},
            {"number": 3, "document": "Expenses <draft>", "source": "expenses.md"},
        ]
    )
    assert (
        line
        == "*Sources:* [1] <https://wiki.example.com/oncall.md|On-call rotation>  ·  [3] Expenses &lt;draft&gt;"
    )


@pytest.mark.django_db(transaction=False)
def test_manifest_declares_what_the_bot_uses():
    import yaml
    from django.conf import settings
    from django.urls import reverse

    manifest = yaml.safe_load((settings.BASE_DIR / "bots" / "slack" / "manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "im:history", "im:read", "im:write", "commands"} <= scopes
    assert {"reactions:read", "reactions:write", "channels:history", "groups:history", "users:read"} <= scopes
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_mention", "message.im", "reaction_added", "reaction_removed"]
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/ask"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is False
    path = reverse("bots:slack-events")
    urls = [events["request_url"], manifest["settings"]["interactivity"]["request_url"]]
    assert path == "/slack/events" and all(url.endswith(path) for url in urls)


def test_long_question_is_cut_and_the_asker_told(slack, fake_slack, settings):
    settings.QUESTION_MAX_CHARS = 80
    asked = QUESTION + " Also: " + "more words " * 200
    response, _ = slack.mention(asked)
    assert response.status_code == 200
    (update,) = answered(fake_slack)
    answer = Answer.objects.get()
    assert answer.question == asked[:80].rstrip() and len(answer.question) <= 80
    note = update.args["blocks"][0]
    assert note["type"] == "context" and "longer than 80 characters" in note["elements"][0]["text"]
