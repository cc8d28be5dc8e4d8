"""No acknowledged Discord question is lost: written down and queued by the gateway, answered by an
answer worker over Discord's REST API (#12 section 4).

The gateway is the real discord.py bot (dpytest for messages, FakeDiscord for interactions), the
answer worker a real RQ worker on the real Redis, and Discord's REST API FakeDiscord
(tests/bots/discord_fake.py), which records every call and can fail or rate-limit any route.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import discord
import discord.ext.test as dpytest
import pytest
from django.core.management import call_command
from django.utils import timezone

from bots.discord import bot as discord_bot
from bots.discord.format import MESSAGE_LIMIT, asked_line, vote_components
from bots.discord.replies import SUPPRESS_EMBEDS, DiscordReplies
from console.conversations import questions
from console.conversations.models import Answer, ChannelSettings, Question
from tests.bots.discord_fake import APP_ID, CHANNEL_ID, GUILD_ID, TOKEN, USER_ID, FakeDiscord
from tests.bots.test_discord import (  # noqa: F401 (fixtures: autouse ones, and handbook)
    QUESTION,
    WIKI_URL,
    _allowed_guild,
    _short_lived_connections,
    buttons,
    dpytest_bot,
    eventually,
    handbook,
    replies_in,
    sent_messages,
    shown,
    started_bot,
)
from tests.bots.test_slack_durable import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL_MESSAGES = rf"/channels/{CHANNEL_ID}/messages"
WEBHOOK = rf"/webhooks/{APP_ID}/[\w.-]+"
ORIGINAL = rf"{WEBHOOK}/messages/@original"
NO_PINGS_IN_A_REPLY = {"parse": [], "replied_user": False}


def take_message(message_id: int = 940000000000000001, **fields) -> Question:
    """A mention written down as the gateway does (its event id, the message it replies to)."""
    question = questions.take(
        "discord",
        f"message:{message_id}",
        user=str(USER_ID),
        channel=str(CHANNEL_ID),
        workspace=str(GUILD_ID),
        text=QUESTION,
        reply_to=str(message_id),
        **fields,
    )
    assert question is not None
    return question


def take_interaction(fake: FakeDiscord, interaction_id: int = 950000000000000001) -> tuple[Question, str]:
    """An /ask written down as the gateway does, after its deferral; (question, its token)."""
    token = f"token-{interaction_id}"
    fake.deferred(token)
    question = questions.take(
        "discord",
        f"interaction:{interaction_id}",
        user=str(USER_ID),
        channel=str(CHANNEL_ID),
        workspace=str(GUILD_ID),
        text=QUESTION,
        interaction=f"{APP_ID}:{token}",
        asked=asked_line(USER_ID, QUESTION),
    )
    assert question is not None
    return question, token


# --- the gateway only writes questions down ----------------------------------------------------------


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_a_mention_becomes_one_question_and_one_reply_with_vote_buttons(
    fake_discord, answer_queue, run_answer_worker
):
    async def scenario():
        async with dpytest_bot() as bot:
            asked = await dpytest.message(f"<@{bot.user.id}> {QUESTION}")
            return asked, sent_messages(), dpytest.get_config().channels[0]

    asked, sent, channel = asyncio.run(scenario())
    assert sent == [] and not Answer.objects.exists()  # nothing answers in the gateway
    question = Question.objects.get()
    assert (question.event_id, question.status) == (f"message:{asked.id}", "pending")
    assert answer_queue.job_ids == [question.job_id]

    run_answer_worker()
    question.refresh_from_db()
    answer = Answer.objects.get()
    assert question.status == "answered" and question.answer == answer
    [typing] = fake_discord.calls_to("POST", rf"/channels/{channel.id}/typing")
    [reply] = replies_in(fake_discord, channel.id)
    assert typing.at < reply.at and reply.headers["Authorization"] == f"Bot {TOKEN}"
    assert shown(answer) in reply.json["content"] and WIKI_URL in reply.json["content"]
    assert reply.json["message_reference"] == {"message_id": str(asked.id), "fail_if_not_exists": False}
    assert reply.json["components"] == vote_components(answer.pk)
    assert buttons(reply.json) == [f"answerbot:vote:+1:{answer.pk}", f"answerbot:vote:-1:{answer.pk}"]
    assert reply.json["allowed_mentions"] == NO_PINGS_IN_A_REPLY
    assert reply.json["flags"] == SUPPRESS_EMBEDS
    assert answer.message_id == reply.response["id"]  # reactions on the reply find the answer


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_a_redelivered_message_is_not_answered_twice(fake_discord, answer_queue, run_answer_worker, caplog):
    """The gateway replays events after a resume, to this process or a restarted one: the message
    id is the question's event id."""
    message_id = 960000000000000001

    async def deliver():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            mention = f"<@{bot.user.id}> {QUESTION}"
            dpytest.backend.make_message(mention, config.members[0], config.channels[0], id_num=message_id)
            await dpytest.run_all_events()

    asyncio.run(deliver())
    asyncio.run(deliver())  # while its job waits
    assert Question.objects.get().event_id == f"message:{message_id}" and answer_queue.count == 1
    run_answer_worker()
    asyncio.run(deliver())  # once answered
    assert answer_queue.count == 0
    run_answer_worker()
    assert Answer.objects.count() == 1 and Question.objects.count() == 1
    assert len(fake_discord.calls_to("POST", r"/channels/\d+/messages")) == 1
    assert caplog.text.count("redelivery ignored") == 2  # both reached `take`, which left them alone


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_an_ask_is_answered_even_after_the_gateway_stopped(fake_discord, answer_queue, run_answer_worker):
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: Question.objects.exists())
            return payload  # the gateway stops here, with the question unanswered

    payload = asyncio.run(scenario())
    [deferral] = fake.interaction_calls(payload["token"])
    assert deferral.json["type"] == 5 and answer_queue.count == 1

    run_answer_worker()
    answer = Answer.objects.get()
    [edit] = fake.calls_to("PATCH", ORIGINAL)
    assert edit.path == f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
    assert "Authorization" not in edit.headers  # webhook routes carry their own token
    assert shown(answer) in edit.json["content"] and edit.json["components"] == vote_components(answer.pk)
    assert edit.json["allowed_mentions"] == {"parse": []} and edit.json["flags"] == SUPPRESS_EMBEDS
    assert answer.message_id == fake.originals[payload["token"]]
    assert fake.calls_to("POST", r"/channels/\d+/messages") == []


def test_redis_down_tells_the_asker_of_a_mention_to_ask_again(fake_discord, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario():
        async with dpytest_bot() as bot:
            await dpytest.message(f"<@{bot.user.id}> {QUESTION}")
            return sent_messages()

    [told] = asyncio.run(scenario())
    assert told.content == questions.NOT_TAKEN
    assert not Question.objects.exists()


def test_redis_down_tells_the_asker_of_an_ask_to_ask_again(fake_discord, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: len(fake.interaction_calls(payload["token"])) == 2)
            return fake.interaction_calls(payload["token"])

    deferral, told = asyncio.run(scenario())
    assert deferral.json["type"] == 5 and told.json["content"] == questions.NOT_TAKEN
    assert not Question.objects.exists()


# --- the answer worker replies over REST ------------------------------------------------------------


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_a_5xx_from_discord_is_tried_again(fake_discord, answer_queue, run_answer_worker):
    take_message()
    fake_discord.fail("POST", CHANNEL_MESSAGES, 502)
    run_answer_worker()
    failed, posted = fake_discord.calls_to("POST", CHANNEL_MESSAGES)
    assert (failed.status, posted.status) == (502, 200) and failed.json == posted.json
    assert Question.objects.get().status == "answered"
    assert Answer.objects.get().message_id == posted.response["id"]


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_discord_failing_every_try_ends_in_an_apology(fake_discord, answer_queue, run_answer_worker):
    question = take_message()
    fake_discord.fail("POST", CHANNEL_MESSAGES, 503, times=3)  # the first try and both retries
    run_answer_worker()
    *failed, apology = fake_discord.calls_to("POST", CHANNEL_MESSAGES)
    assert [c.status for c in failed] == [503, 503, 503] and apology.status == 200
    assert apology.json["content"] == questions.SORRY
    assert apology.json["message_reference"]["message_id"] == question.reply_to
    assert apology.json["components"] == []  # no buttons on an apology
    question.refresh_from_db()
    assert question.status == "failed" and "HTTP 503" in question.error


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_a_429_is_waited_out_and_tried_again(fake_discord, answer_queue, run_answer_worker):
    _, token = take_interaction(fake_discord)
    fake_discord.rate_limit("PATCH", ORIGINAL, retry_after=0.4)
    run_answer_worker()
    limited, edited = fake_discord.calls_to("PATCH", ORIGINAL)
    assert (limited.status, edited.status) == (429, 200)
    assert edited.at - limited.at >= 0.4
    assert Question.objects.get().status == "answered"
    assert Answer.objects.get().message_id == fake_discord.originals[token]


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
@pytest.mark.parametrize("why", ["older than 15 minutes", "refused by Discord"])
def test_an_ask_whose_token_expired_is_answered_in_the_channel(
    why, fake_discord, answer_queue, run_answer_worker
):
    question, token = take_interaction(fake_discord)
    if why == "older than 15 minutes":
        Question.objects.filter(pk=question.pk).update(created_at=timezone.now() - timedelta(minutes=16))
    else:
        fake_discord.expired_tokens.add(token)
    run_answer_worker()
    answer = Answer.objects.get()
    [posted] = fake_discord.calls_to("POST", CHANNEL_MESSAGES)
    assert posted.json["content"].startswith(f"<@{USER_ID}> asked: {QUESTION}")
    assert shown(answer) in posted.json["content"] and posted.json["components"] == vote_components(answer.pk)
    assert "message_reference" not in posted.json and posted.json["allowed_mentions"] == {"parse": []}
    assert answer.message_id == posted.response["id"]
    edits = fake_discord.calls_to("PATCH", ORIGINAL)
    assert [e.status for e in edits] == ([] if why == "older than 15 minutes" else [401])


@pytest.mark.usefixtures("use_tiny_llm", "handbook")
def test_a_channel_switched_off_meanwhile_takes_the_thinking_response_back(
    fake_discord, answer_queue, run_answer_worker
):
    question, token = take_interaction(fake_discord)
    ChannelSettings.objects.create(platform="discord", channel_id=str(CHANNEL_ID), enabled=False)
    run_answer_worker()
    [deleted] = fake_discord.calls_to("DELETE", ORIGINAL)
    assert deleted.status == 204 and token not in fake_discord.originals
    assert fake_discord.calls_to("PATCH", ORIGINAL) == [] and not Answer.objects.exists()
    question.refresh_from_db()
    assert question.status == "failed" and "switched off" in question.error


def test_sweep_gives_up_with_an_apology_in_place_of_the_thinking_response(
    fake_discord, answer_queue, settings
):
    settings.SWEEP_AFTER_SECONDS = 0
    question, token = take_interaction(fake_discord)
    Question.objects.filter(pk=question.pk).update(status="answering", attempts=settings.ANSWER_ATTEMPTS)
    answer_queue.empty()  # its worker died for the last time
    call_command("sweep")
    question.refresh_from_db()
    assert question.status == "failed"
    [apology] = fake_discord.calls_to("PATCH", ORIGINAL)
    assert apology.json["content"] == questions.GAVE_UP and apology.json["components"] == []
    assert fake_discord.messages[fake_discord.originals[token]]["content"] == questions.GAVE_UP


@pytest.mark.parametrize("kind", ["message", "interaction"])
def test_a_long_answer_goes_in_pieces_the_last_with_the_buttons(kind, fake_discord, answer_queue):
    long_text = " ".join(f"Step {n}: restart the paging service and check the dashboard." for n in range(90))
    answer = Answer.objects.create(
        platform="discord",
        channel=str(CHANNEL_ID),
        question=QUESTION,
        text=long_text,
        mode="rag",
        sources=[{"document": "On-call rotation", "source": WIKI_URL}],
    )
    question = take_message() if kind == "message" else take_interaction(fake_discord)[0]
    DiscordReplies().deliver(question, answer)
    if kind == "message":
        pieces = fake_discord.calls_to("POST", CHANNEL_MESSAGES)
        assert pieces[0].json["message_reference"]["message_id"] == question.reply_to
        assert all("message_reference" not in p.json for p in pieces[1:])
    else:
        pieces = fake_discord.calls_to("PATCH", ORIGINAL) + fake_discord.calls_to("POST", WEBHOOK)
        assert len(fake_discord.calls_to("PATCH", ORIGINAL)) == 1
        assert all(p.query == {"wait": "true"} for p in pieces[1:])  # each comes back with its id
    contents = [p.json["content"] for p in pieces]
    assert len(pieces) >= 3 and all(len(c) <= MESSAGE_LIMIT for c in contents)
    assert " ".join(contents).startswith(long_text[:500]) and WIKI_URL in contents[-1]
    assert [p.json["components"] for p in pieces] == [[]] * (len(pieces) - 1) + [vote_components(answer.pk)]
    answer.refresh_from_db()
    assert answer.message_id == pieces[-1].response["id"]


def test_the_posted_buttons_are_the_gateways_vote_buttons():
    """The worker writes the buttons as JSON; the gateway's VoteButton must read them as its own."""

    async def gateway_view():
        view = discord.ui.View(timeout=None)
        view.add_item(discord_bot.VoteButton(42, 1))
        view.add_item(discord_bot.VoteButton(42, -1))
        return view.to_components()

    assert asyncio.run(gateway_view()) == vote_components(42)
