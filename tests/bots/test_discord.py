"""The Discord gateway against the real discord.py: dpytest for messages, a fake Discord API for interactions.

`!ask`, mentions and reactions go through dpytest, which swaps discord.py's HTTP client and gateway
state for an in-memory Discord. The slash command and the vote buttons go the way Discord delivers
them: an INTERACTION_CREATE payload parsed by discord.py's own ConnectionState, with every REST call
(login, command sync, interaction callback, follow-up webhook) sent over HTTP to `FakeDiscord`
(tests/bots/discord_fake.py), a small local server that answers with Discord's JSON shapes and
records each call. Questions are answered by a real RQ worker, which replies to the same fake
over DISCORD_API_URL (bots/discord/replies.py; more in test_discord_durable.py).

The bot works in worker threads, each with its own database connection, hence `transactional_db`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext.test import factories
from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django.db import connections

from bots.discord import bot as discord_bot
from bots.discord.bot import AnswerBot, serve
from bots.discord.format import (
    MESSAGE_LIMIT,
    answer_messages,
    safe_links,
    split_message,
    strip_mention,
    vote_value,
)
from console.conversations.models import Answer, ChannelSettings, Feedback, Question
from console.conversations.pseudonyms import hash_id
from console.training.models import TrainingPair
from tests.bots.discord_fake import (
    APP_ID,
    CHANNEL_ID,
    GUILD_ID,
    OTHER_USER_ID,
    TOKEN,
    USER_ID,
    FakeDiscord,
)
from tests.knowledge.conftest import ONCALL_MD

pytestmark = pytest.mark.usefixtures("transactional_db")

QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
WIKI_URL = "https://wiki.example.com/oncall.md"
WAIT_S = 30.0


def shown(answer: Answer) -> str:
    """The answer's text as Discord shows it: the tiny model's random bytes include control characters."""
    return safe_links(answer.text, answer.sources)


@pytest.fixture(autouse=True)
def _allowed_guild(settings):
    """The bot answers in GUILD_ID (and dpytest's guild, see dpytest_bot); membership is looked up afresh."""
    settings.DISCORD_ALLOWED_GUILDS = frozenset({GUILD_ID})
    discord_bot._members.clear()
    yield
    discord_bot._members.clear()


@pytest.fixture(autouse=True)
def _short_lived_connections(monkeypatch):
    """The bot's worker threads close their connections after each call, so the test database can go."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def handbook(collection, add_document):
    add_document(collection, WIKI_URL, ONCALL_MD)
    return collection


async def eventually(check, timeout: float = WAIT_S):
    """Poll `check` (sync, run in a thread so it may query the database) until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await discord_bot._off_loop(check)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.02)


# --- dpytest: !ask, mentions, reactions -------------------------------------------------------------


@contextlib.asynccontextmanager
async def dpytest_bot(*, allow_its_guild: bool = True):
    # dpytest keeps its fake members in the member cache, which needs the members intent.
    intents = discord_bot.bot_intents()
    intents.members = True
    bot = AnswerBot(intents=intents)
    await bot._async_setup_hook()
    dpytest.configure(bot)
    if allow_its_guild:
        settings.DISCORD_ALLOWED_GUILDS = frozenset({GUILD_ID, dpytest.get_config().guilds[0].id})
    # dpytest 0.7 predates discord.py setting ConnectionState.loop in _async_setup_hook; its
    # replacement state needs the loop for typing indicators and views.
    bot._connection.loop = asyncio.get_running_loop()
    await bot.install()  # setup_hook without the slash command sync, which dpytest cannot fake
    try:
        yield bot
    finally:
        await dpytest.empty_queue()


def sent_messages() -> list[discord.Message]:
    messages = []
    while not dpytest.sent_queue.empty():
        messages.append(dpytest.get_message())
    return messages


@dataclass(frozen=True)
class Posted:
    """A message the bot posted, as a reaction payload names it."""

    id: int
    channel_id: int
    guild_id: int
    author_id: int


def reaction(
    message: Posted, user_id: int, emoji: str, member: dict | None = None, *, removed: bool = False
) -> dict:
    """A MESSAGE_REACTION_ADD gateway payload as Discord sends it; `removed`: a MESSAGE_REACTION_REMOVE,
    which carries no member and no message author."""
    data = {
        "user_id": str(user_id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "guild_id": str(message.guild_id),
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "type": 0,
    }
    if not removed:
        data.update(message_author_id=str(message.author_id), burst_colors=[])
    if member is not None:
        data["member"] = member
    return data


def replies_in(fake: FakeDiscord, channel_id: int) -> list:
    """The answer worker's messages posted in a channel, oldest first."""
    return fake.calls_to("POST", rf"/channels/{channel_id}/messages")


def test_ask_command_is_written_down_then_answered_in_a_reply_with_linked_sources(
    use_tiny_llm, handbook, fake_discord, run_answer_worker
):
    async def scenario():
        async with dpytest_bot():
            config = dpytest.get_config()
            asked = await dpytest.message(f"!ask {QUESTION}")
            return sent_messages(), asked, config.channels[0], config.guilds[0]

    sent, asked, channel, guild = asyncio.run(scenario())
    assert sent == []  # the gateway answers nothing itself
    question = Question.objects.get()
    assert (question.event_id, question.reply_to) == (f"message:{asked.id}", str(asked.id))
    assert (question.channel, question.workspace, question.status) == (
        str(channel.id),
        str(guild.id),
        "pending",
    )
    assert not Answer.objects.exists()

    run_answer_worker()
    [reply] = replies_in(fake_discord, channel.id)
    answer = Answer.objects.get()
    assert (answer.platform, answer.channel, answer.workspace) == ("discord", str(channel.id), str(guild.id))
    assert answer.question == QUESTION and answer.covered
    assert shown(answer) in reply.json["content"]
    assert f"[{answer.sources[0]['document']}]({WIKI_URL})" in reply.json["content"]
    assert reply.json["message_reference"]["message_id"] == str(asked.id)
    assert answer.message_id == reply.response["id"]
    assert answer.asker == hash_id("discord", str(dpytest.get_config().members[0].id))


def test_long_question_is_cut_and_the_asker_told(
    use_tiny_llm, handbook, settings, fake_discord, run_answer_worker
):
    settings.QUESTION_MAX_CHARS = 80

    async def scenario():
        async with dpytest_bot():
            await dpytest.message(f"!ask {QUESTION} " + "more words " * 300)
            return dpytest.get_config().channels[0]

    channel = asyncio.run(scenario())
    question = Question.objects.get()
    assert len(question.text) <= 80 and question.text.startswith(QUESTION)
    run_answer_worker()
    assert Answer.objects.get().question == question.text
    [reply] = replies_in(fake_discord, channel.id)
    assert reply.json["content"].startswith("*Your question was longer than 80 characters")


def test_mention_is_taken_and_bots_are_ignored(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            await dpytest.message(f"<@{bot.user.id}> {QUESTION}")
            first = sent_messages()
            robot = dpytest.backend.make_user("OtherBot", "0002")
            robot.bot = True
            robot_member = dpytest.backend.make_member(robot, config.guilds[0])
            await dpytest.message(f"<@{bot.user.id}> {QUESTION}", member=robot_member)
            await dpytest.message(f"!ask {QUESTION}", member=robot_member)
            await dpytest.message(f"<@{bot.user.id}>")
            return first, sent_messages()

    first, later = asyncio.run(scenario())
    assert first == [] and Question.objects.get().text == QUESTION  # only the person's question
    assert [m.content for m in later] == [discord_bot.USAGE]  # the empty mention; nothing for the bot


def test_direct_message_is_answered_without_a_mention(
    use_tiny_llm, handbook, fake_discord, run_answer_worker
):
    async def scenario():
        async with dpytest_bot():
            member = dpytest.get_config().members[0]
            direct = await member.create_dm()
            await dpytest.message(QUESTION, channel=direct, member=member)
            return sent_messages(), direct

    sent, direct = asyncio.run(scenario())
    assert sent == []
    run_answer_worker()
    answer = Answer.objects.get()
    assert (answer.channel, answer.workspace) == (str(direct.id), "")
    [reply] = replies_in(fake_discord, direct.id)
    assert shown(answer) in reply.json["content"]


def test_a_server_that_is_not_allowed_gets_a_warning_in_the_log_and_no_answers(caplog):
    async def scenario():
        async with dpytest_bot(allow_its_guild=False) as bot:
            guild = dpytest.get_config().guilds[0]
            await bot.on_ready()
            await bot.on_guild_join(guild)
            await dpytest.message(f"!ask {QUESTION}")
            await dpytest.message(f"<@{bot.user.id}> {QUESTION}")
            return guild, sent_messages()

    guild, sent = asyncio.run(scenario())
    assert sent == [] and not Question.objects.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum(str(guild.id) in w and "not in DISCORD_ALLOWED_GUILDS" in w for w in warnings) == 2


def test_direct_messages_only_from_members_of_an_allowed_server():
    async def scenario():
        async with dpytest_bot(allow_its_guild=False):  # the member's only server is not allowed
            member = dpytest.get_config().members[0]
            direct = await member.create_dm()
            await dpytest.message(QUESTION, channel=direct, member=member)
            return sent_messages()

    assert [m.content for m in asyncio.run(scenario())] == [discord_bot.NOT_ALLOWED]
    assert not Question.objects.exists()


def test_an_empty_allow_list_answers_nowhere_and_says_so_at_start_up(caplog):
    settings.DISCORD_ALLOWED_GUILDS = frozenset()

    async def scenario():
        async with dpytest_bot(allow_its_guild=False) as bot:
            await bot.on_ready()
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages()

    assert asyncio.run(scenario()) == [] and not Question.objects.exists()
    assert any("DISCORD_ALLOWED_GUILDS is empty" in r.getMessage() for r in caplog.records)


def test_switched_off_channel_gets_no_answer(answer_queue):
    async def scenario():
        async with dpytest_bot():
            channel = dpytest.get_config().channels[0]
            await discord_bot._off_loop(
                ChannelSettings.objects.create, platform="discord", channel_id=str(channel.id), enabled=False
            )
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages()

    assert asyncio.run(scenario()) == []
    assert not Question.objects.exists() and answer_queue.count == 0


async def posted_answer(bot: discord.Client) -> Posted:
    """An answer the worker posted in dpytest's channel (the row it left behind), as a message."""
    config = dpytest.get_config()
    channel, guild = config.channels[0], config.guilds[0]
    message_id = 930000000000000001
    await discord_bot._off_loop(
        Answer.objects.create,
        platform="discord",
        channel=str(channel.id),
        workspace=str(guild.id),
        question=QUESTION,
        text="Within 5 minutes.",
        mode="rag",
        message_id=str(message_id),
    )
    return Posted(message_id, channel.id, guild.id, bot.user.id)


def test_reactions_on_answers_are_votes_one_per_person_and_bots_ignored():
    async def scenario():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            reply = await posted_answer(bot)
            member = factories.dict_from_member(config.members[0])
            robot = {**member, "user": {**member["user"], "id": str(OTHER_USER_ID), "bot": True}}
            state = bot._connection
            state.parse_message_reaction_add(reaction(reply, bot.user.id, "👍"))
            state.parse_message_reaction_add(reaction(reply, OTHER_USER_ID, "👍", robot))
            state.parse_message_reaction_add(reaction(reply, config.members[0].id, "🎉", member))
            state.parse_message_reaction_add(reaction(reply, config.members[0].id, "👍🏽", member))
            await dpytest.run_all_events()
            first = await discord_bot._off_loop(lambda: list(Feedback.objects.values_list("voter", "value")))
            state.parse_message_reaction_add(reaction(reply, config.members[0].id, "👎", member))
            await dpytest.run_all_events()
            return config.members[0].id, first

    voter_id, first = asyncio.run(scenario())
    voter = hash_id("discord", str(voter_id))
    assert first == [(voter, 1)]
    assert list(Feedback.objects.values_list("voter", "value", "platform")) == [(voter, -1, "discord")]


def test_removing_a_reaction_takes_that_vote_back():
    async def scenario():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            reply = await posted_answer(bot)
            member = factories.dict_from_member(config.members[0])
            state = bot._connection
            state.parse_message_reaction_add(reaction(reply, config.members[0].id, "👍", member))
            await dpytest.run_all_events()
            voted = await discord_bot._off_loop(
                lambda: list(Feedback.objects.values_list("value", flat=True))
            )
            state.parse_message_reaction_remove(reaction(reply, config.members[0].id, "👎", removed=True))
            await dpytest.run_all_events()
            kept = await discord_bot._off_loop(lambda: list(Feedback.objects.values_list("value", flat=True)))
            state.parse_message_reaction_remove(reaction(reply, config.members[0].id, "👍", removed=True))
            await dpytest.run_all_events()
            return voted, kept

    voted, kept = asyncio.run(scenario())
    assert voted == [1] and kept == [1]  # removing a 👎 she never cast leaves her 👍
    assert not Feedback.objects.exists()


# --- pure formatting ----------------------------------------------------------------------------------


def test_split_message_keeps_every_piece_within_the_limit_and_loses_nothing():
    text = "\n\n".join("word " * 150 for _ in range(6)) + "x" * 4500
    pieces = split_message(text)
    assert all(0 < len(p) <= MESSAGE_LIMIT for p in pieces)
    assert "".join(p.replace(" ", "").replace("\n", "") for p in pieces) == text.replace(" ", "").replace(
        "\n", ""
    )
    assert split_message("short") == ["short"]


def test_sources_are_links_for_urls_and_titles_otherwise():
    [message] = answer_messages(
        "Within 5 minutes [1].",
        [{"document": "On-call [v2]", "source": WIKI_URL}, {"document": "Expenses", "source": "expenses.md"}],
    )
    assert message.endswith(f"**Sources:** [On-call (v2)]({WIKI_URL}) · Expenses")
    assert vote_value("👍🏿") == 1 and vote_value("👎") == -1 and vote_value("🎉") is None
    assert strip_mention("<@42> what is <@!42> <@7>?", 42) == "what is <@7>?"


# --- interactions through discord.py's objects and a fake Discord API ----------------------------------


@contextlib.asynccontextmanager
async def started_bot():
    """An AnswerBot through its real start-up (login, setup_hook); events are then fed to its state."""
    bot = AnswerBot()
    try:
        await bot.login(TOKEN)
        yield bot
    finally:
        await bot.close()


def buttons(message: dict) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


def test_slash_command_defers_then_the_worker_edits_the_response_with_vote_buttons(
    use_tiny_llm, handbook, fake_discord, answer_worker
):
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            [synced] = next(c.json for c in fake.calls if c.method == "PUT")
            assert synced["name"] == "ask" and synced["options"][0]["name"] == "question"
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: Answer.objects.exclude(message_id="").exists())
            return payload, fake.interaction_calls(payload["token"])

    payload, calls = asyncio.run(scenario())
    callback, edit = calls
    assert (callback.method, callback.json["type"]) == ("POST", 5)  # deferred: "answerbot is thinking…"
    assert edit.method == "PATCH" and edit.path == f"/webhooks/{APP_ID}/{payload['token']}/messages/@original"
    question = Question.objects.get()
    assert question.event_id == f"interaction:{payload['id']}"
    assert question.interaction == f"{APP_ID}:{payload['token']}"
    answer = Answer.objects.get()
    assert (answer.platform, answer.channel, answer.workspace) == ("discord", str(CHANNEL_ID), str(GUILD_ID))
    assert shown(answer) in edit.json["content"] and f"]({WIKI_URL})" in edit.json["content"]
    assert buttons(edit.json) == [f"answerbot:vote:+1:{answer.pk}", f"answerbot:vote:-1:{answer.pk}"]
    assert answer.message_id == edit.response["id"] == fake.originals[payload["token"]]
    assert answer.asker == hash_id("discord", str(USER_ID))


def test_vote_buttons_record_one_vote_per_user_and_survive_a_restart(
    use_tiny_llm, handbook, fake_discord, answer_worker
):
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            bot._connection.parse_interaction_create(fake.slash_ask(QUESTION))
            await eventually(lambda: Answer.objects.exclude(message_id="").exists())
            answer = await discord_bot._off_loop(Answer.objects.get)
            message = fake.messages[answer.message_id]  # posted by the answer worker
            up, down = buttons(message)
            first_click = fake.click(message, up)
            bot._connection.parse_interaction_create(first_click)
            await eventually(lambda: len(fake.interaction_calls(first_click["token"])) == 1)
            assert await discord_bot._off_loop(lambda: Feedback.objects.filter(value=1).count()) == 1
        async with started_bot() as restarted:  # a new process: only the start-up registration helps
            assert message["id"] not in {
                str(i) for i in restarted._connection._view_store._synced_message_views
            }
            clicks = [fake.click(message, down), fake.click(message, up, OTHER_USER_ID)]
            for click in clicks:
                restarted._connection.parse_interaction_create(click)
            await eventually(
                lambda: Feedback.objects.filter(value=-1).exists() and Feedback.objects.count() == 2
            )
            await eventually(lambda: all(len(fake.interaction_calls(c["token"])) == 1 for c in clicks))
            return answer, [fake.interaction_calls(c["token"])[0] for c in clicks]

    answer, responses = asyncio.run(scenario())
    votes = dict(Feedback.objects.filter(answer=answer).values_list("voter", "value"))
    assert votes == {hash_id("discord", str(USER_ID)): -1, hash_id("discord", str(OTHER_USER_ID)): 1}
    down_response, up_response = responses
    assert down_response.json["type"] == 9  # the 👎 opens the "what was wrong?" form
    assert up_response.json["type"] == 4 and up_response.json["data"]["flags"] & 64  # an ephemeral thank-you
    assert "recorded" in up_response.json["data"]["content"]


def feedback_submission(fake: FakeDiscord, answer_id: int, *, category: str, better: str = "") -> dict:
    """A MODAL_SUBMIT of the 👎 form as Discord sends it: label components wrapping the inputs."""
    fields = [("category", {"type": 3, "custom_id": "category", "values": [category]})]
    fields += [("reason", {"type": 4, "custom_id": "reason", "value": "Wrong time limit"})]
    fields += [("better_answer", {"type": 4, "custom_id": "better_answer", "value": better})]
    components = [
        {"type": 18, "id": 2 * n + 1, "component": {"id": 2 * n + 2, **component}}
        for n, (_, component) in enumerate(fields)
    ]
    return fake.interaction(5, {"custom_id": f"answerbot:feedback:{answer_id}", "components": components})


def test_thumbs_down_opens_a_form_whose_answer_counts_even_after_a_restart(
    use_tiny_llm, handbook, fake_discord, answer_worker
):
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            bot._connection.parse_interaction_create(fake.slash_ask(QUESTION))
            await eventually(lambda: Answer.objects.exclude(message_id="").exists())
            answer = await discord_bot._off_loop(Answer.objects.get)
            _, down = buttons(fake.messages[answer.message_id])
            click = fake.click(fake.messages[answer.message_id], down)
            bot._connection.parse_interaction_create(click)
            await eventually(lambda: len(fake.interaction_calls(click["token"])) == 1)
        async with started_bot() as restarted:  # the form is submitted to a new process
            submitted = feedback_submission(fake, answer.pk, category="facts", better="Within 5 minutes.")
            restarted._connection.parse_interaction_create(submitted)
            await eventually(lambda: len(fake.interaction_calls(submitted["token"])) == 1)
        return (
            answer,
            fake.interaction_calls(click["token"])[0],
            fake.interaction_calls(submitted["token"])[0],
        )

    answer, opened, thanked = asyncio.run(scenario())
    assert opened.json["type"] == 9  # MODAL
    form = opened.json["data"]
    assert form["custom_id"] == f"answerbot:feedback:{answer.pk}"
    select = form["components"][0]["component"]
    assert [o["value"] for o in select["options"]] == list(Feedback.Category.values)
    assert [c["component"]["custom_id"] for c in form["components"]] == [
        "category",
        "reason",
        "better_answer",
    ]
    assert thanked.json["type"] == 4 and thanked.json["data"]["flags"] & 64
    assert thanked.json["data"]["content"] == discord_bot.CORRECTION_THANKS
    feedback = Feedback.objects.get()
    assert (feedback.value, feedback.category, feedback.reason) == (-1, "facts", "Wrong time limit")
    pair = TrainingPair.objects.get()
    assert (pair.source, pair.status, pair.answer) == ("correction", "candidate", "Within 5 minutes.")


def test_a_correction_beyond_the_daily_limit_is_refused_politely(
    use_tiny_llm, handbook, fake_discord, answer_worker
):
    settings.CORRECTIONS_PER_DAY = 0
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            bot._connection.parse_interaction_create(fake.slash_ask(QUESTION))
            await eventually(lambda: Answer.objects.exclude(message_id="").exists())
            answer = await discord_bot._off_loop(Answer.objects.get)
            submitted = feedback_submission(fake, answer.pk, category="length", better="Shorter, please.")
            bot._connection.parse_interaction_create(submitted)
            await eventually(lambda: len(fake.interaction_calls(submitted["token"])) == 1)
            return fake.interaction_calls(submitted["token"])[0]

    told = asyncio.run(scenario())
    assert "already sent 0 better answers in the last 24 hours" in told.json["data"]["content"]
    assert told.json["data"]["flags"] & 64
    assert not TrainingPair.objects.exists() and Feedback.objects.get().category == "length"


def test_slash_command_in_a_server_that_is_not_allowed_is_refused(fake_discord):
    settings.DISCORD_ALLOWED_GUILDS = frozenset({GUILD_ID + 1})
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: len(fake.interaction_calls(payload["token"])) == 1)
            return fake.interaction_calls(payload["token"])

    [refusal] = asyncio.run(scenario())
    assert refusal.json["type"] == 4 and refusal.json["data"]["content"] == discord_bot.NOT_ALLOWED
    assert not Question.objects.exists()


THREAD = {
    "id": "900000000000000009",
    "type": 11,  # a public thread under CHANNEL_ID
    "guild_id": str(GUILD_ID),
    "parent_id": str(CHANNEL_ID),
    "owner_id": str(USER_ID),
    "name": "Paging question",
    "thread_metadata": {
        "archived": False,
        "auto_archive_duration": 1440,
        "archive_timestamp": "2026-01-01T00:00:00+00:00",
        "locked": False,
    },
    "member_count": 1,
    "message_count": 1,
    "rate_limit_per_user": 0,
    "flags": 0,
}


def test_questions_in_a_thread_belong_to_the_parent_channel_and_its_settings(
    use_tiny_llm, handbook, fake_discord, answer_worker
):
    fake = fake_discord

    async def scenario():
        async with started_bot() as bot:
            for answered in (1, 2):  # the second is a follow-up in the same thread
                bot._connection.parse_interaction_create(fake.slash_ask(QUESTION, channel=THREAD))
                await eventually(lambda n=answered: Answer.objects.exclude(message_id="").count() == n)
            await discord_bot._off_loop(
                ChannelSettings.objects.create, platform="discord", channel_id=str(CHANNEL_ID), enabled=False
            )
            switched_off = fake.slash_ask(QUESTION, channel=THREAD)
            bot._connection.parse_interaction_create(switched_off)
            await eventually(lambda: len(fake.interaction_calls(switched_off["token"])) == 2)
            return fake.interaction_calls(switched_off["token"])[1]

    refusal = asyncio.run(scenario())
    assert set(Answer.objects.values_list("channel", "thread", "workspace")) == {
        (str(CHANNEL_ID), THREAD["id"], str(GUILD_ID))
    }
    first, follow_up = Answer.objects.order_by("pk")
    assert follow_up.prompt_tokens > first.prompt_tokens  # the thread's earlier turn came along
    assert refusal.json["content"] == discord_bot.SWITCHED_OFF


# --- start-up and reconnecting --------------------------------------------------------------------


def test_rundiscordbot_needs_a_token(settings):
    settings.DISCORD_TOKEN = ""
    assert "rundiscordbot" in get_commands()
    with pytest.raises(CommandError, match="DISCORD_TOKEN is not set"):
        call_command("rundiscordbot")


def test_runall_starts_the_discord_bot_when_a_token_is_set(settings):
    from console.management.commands.runall import process_table

    settings.DISCORD_TOKEN = "token"
    assert process_table("127.0.0.1:8000")["discordbot"].endswith("manage.py rundiscordbot")


def test_rejected_token_stops_at_once(fake_discord):
    fake_discord.reject_token = True
    with pytest.raises(discord.LoginFailure):
        asyncio.run(serve("bad-token", sleep=pytest.fail))


def test_connection_failures_are_retried_with_exponential_back_off(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: every login is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    delays: list[float] = []

    class GiveUp(Exception):
        pass

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 4:
            raise GiveUp

    with pytest.raises(GiveUp):
        asyncio.run(serve("token", sleep=sleep, first_delay=1.0, max_delay=5.0))
    assert all(low <= d <= low * 1.25 for d, low in zip(delays, [1, 2, 4, 5], strict=True))
