"""The Discord bot against the real discord.py: dpytest for messages, a fake Discord API for interactions.

`!ask`, mentions and reactions go through dpytest, which swaps discord.py's HTTP client and gateway
state for an in-memory Discord. The slash command and the vote buttons go the way Discord delivers
them: an INTERACTION_CREATE payload parsed by discord.py's own ConnectionState, with every REST call
(login, command sync, interaction callback, follow-up webhook) sent over HTTP to `FakeDiscord`, a
small local server that answers with Discord's JSON shapes and records each call.

The bot works in worker threads, each with its own database connection, hence `transactional_db`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
from dataclasses import dataclass
from typing import Any

import discord
import discord.ext.test as dpytest
import pytest
from aiohttp import web
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
from console.conversations.models import Answer, ChannelSettings, Feedback
from console.conversations.pseudonyms import hash_id
from console.training.models import TrainingPair
from tests.knowledge.conftest import ONCALL_MD

pytestmark = pytest.mark.usefixtures("transactional_db")

QUESTION = "How quickly must the on-call engineer acknowledge a PagerDuty page?"
WIKI_URL = "https://wiki.example.com/oncall.md"
GUILD_ID, CHANNEL_ID, USER_ID, OTHER_USER_ID = (
    900000000000000001,
    900000000000000002,
    900000000000000003,
    900000000000000004,
)
APP_ID, BOT_ID = 910000000000000001, 910000000000000002
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


def reaction(
    message: discord.Message, user_id: int, emoji: str, member: dict | None = None, *, removed: bool = False
) -> dict:
    """A MESSAGE_REACTION_ADD gateway payload as Discord sends it; `removed`: a MESSAGE_REACTION_REMOVE,
    which carries no member and no message author."""
    data = {
        "user_id": str(user_id),
        "channel_id": str(message.channel.id),
        "message_id": str(message.id),
        "guild_id": str(message.guild.id),
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "type": 0,
    }
    if not removed:
        data.update(message_author_id=str(message.author.id), burst_colors=[])
    if member is not None:
        data["member"] = member
    return data


def test_ask_command_replies_with_answer_and_linked_sources(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot():
            config = dpytest.get_config()
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages(), config.channels[0], config.guilds[0]

    sent, channel, guild = asyncio.run(scenario())
    answer = Answer.objects.get()
    assert (answer.platform, answer.channel, answer.workspace) == ("discord", str(channel.id), str(guild.id))
    assert answer.question == QUESTION and answer.covered
    assert len(sent) == 1 and shown(answer) in sent[0].content
    assert f"[{answer.sources[0]['document']}]({WIKI_URL})" in sent[0].content
    assert answer.message_id == str(sent[0].id)
    assert answer.asker == hash_id("discord", str(dpytest.get_config().members[0].id))


def test_long_question_is_cut_and_the_asker_told(use_tiny_llm, handbook, settings):
    settings.QUESTION_MAX_CHARS = 80

    async def scenario():
        async with dpytest_bot():
            await dpytest.message(f"!ask {QUESTION} " + "more words " * 300)
            return sent_messages()

    sent = asyncio.run(scenario())
    answer = Answer.objects.get()
    assert len(answer.question) <= 80 and answer.question.startswith(QUESTION)
    assert sent[0].content.startswith("*Your question was longer than 80 characters")


def test_mention_is_answered_and_bots_are_ignored(use_tiny_llm, handbook):
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
    answer = Answer.objects.get()
    assert answer.question == QUESTION
    assert len(first) == 1 and shown(answer) in first[0].content and WIKI_URL in first[0].content
    assert [m.content for m in later] == [discord_bot.USAGE]  # the empty mention; nothing for the bot


def test_direct_message_is_answered_without_a_mention(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot():
            member = dpytest.get_config().members[0]
            direct = await member.create_dm()
            await dpytest.message(QUESTION, channel=direct, member=member)
            return sent_messages(), direct

    sent, direct = asyncio.run(scenario())
    answer = Answer.objects.get()
    assert (answer.channel, answer.workspace) == (str(direct.id), "")
    assert len(sent) == 1 and shown(answer) in sent[0].content


def test_a_server_that_is_not_allowed_gets_a_warning_in_the_log_and_no_answers(
    use_tiny_llm, handbook, caplog
):
    async def scenario():
        async with dpytest_bot(allow_its_guild=False) as bot:
            guild = dpytest.get_config().guilds[0]
            await bot.on_ready()
            await bot.on_guild_join(guild)
            await dpytest.message(f"!ask {QUESTION}")
            await dpytest.message(f"<@{bot.user.id}> {QUESTION}")
            return guild, sent_messages()

    guild, sent = asyncio.run(scenario())
    assert sent == [] and not Answer.objects.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum(str(guild.id) in w and "not in DISCORD_ALLOWED_GUILDS" in w for w in warnings) == 2


def test_direct_messages_only_from_members_of_an_allowed_server(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot(allow_its_guild=False):  # the member's only server is not allowed
            member = dpytest.get_config().members[0]
            direct = await member.create_dm()
            await dpytest.message(QUESTION, channel=direct, member=member)
            return sent_messages()

    assert [m.content for m in asyncio.run(scenario())] == [discord_bot.NOT_ALLOWED]
    assert not Answer.objects.exists()


def test_an_empty_allow_list_answers_nowhere_and_says_so_at_start_up(use_tiny_llm, handbook, caplog):
    settings.DISCORD_ALLOWED_GUILDS = frozenset()

    async def scenario():
        async with dpytest_bot(allow_its_guild=False) as bot:
            await bot.on_ready()
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages()

    assert asyncio.run(scenario()) == [] and not Answer.objects.exists()
    assert any("DISCORD_ALLOWED_GUILDS is empty" in r.getMessage() for r in caplog.records)


def test_switched_off_channel_gets_no_answer(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot():
            channel = dpytest.get_config().channels[0]
            await discord_bot._off_loop(
                ChannelSettings.objects.create, platform="discord", channel_id=str(channel.id), enabled=False
            )
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages()

    assert asyncio.run(scenario()) == []
    assert not Answer.objects.exists()


def test_reactions_on_answers_are_votes_one_per_person_and_bots_ignored(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            await dpytest.message(f"!ask {QUESTION}")
            [reply] = sent_messages()
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


def test_removing_a_reaction_takes_that_vote_back(use_tiny_llm, handbook):
    async def scenario():
        async with dpytest_bot() as bot:
            config = dpytest.get_config()
            await dpytest.message(f"!ask {QUESTION}")
            [reply] = sent_messages()
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


def test_long_answer_is_split_into_messages_within_the_limit(db, monkeypatch):
    long_text = " ".join(f"Step {n}: restart the paging service and check the dashboard." for n in range(90))
    sources = [{"document": "On-call rotation", "source": WIKI_URL}]
    row = Answer.objects.create(
        platform="discord", question=QUESTION, text=long_text, mode="rag", sources=sources
    )
    monkeypatch.setattr(discord_bot, "_ask", lambda question, place, user_id: row)

    async def scenario():
        async with dpytest_bot():
            await dpytest.message(f"!ask {QUESTION}")
            return sent_messages()

    sent = asyncio.run(scenario())
    assert len(sent) >= 3 and all(len(m.content) <= MESSAGE_LIMIT for m in sent)
    assert " ".join(m.content for m in sent).startswith(long_text[:500])
    assert WIKI_URL in sent[-1].content
    assert Answer.objects.get().message_id == str(sent[-1].id)


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


def respond(data: Any, status: int = 200) -> web.Response:
    # discord.py decodes a body only when Content-Type is exactly application/json, as Discord sends it
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    json: Any


class FakeDiscord:
    """Discord's REST API on localhost: answers with Discord's JSON shapes and records every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, dict] = {}
        self.ids = itertools.count(920000000000000001)
        self.reject_token = False
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/api/v10"

    async def stop(self) -> None:
        await self.runner.cleanup()

    def snowflake(self) -> str:
        return str(next(self.ids))

    @staticmethod
    def user(user_id: int, name: str, bot: bool = False) -> dict:
        return {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": bot,
        }

    def message(self, body: dict, message_id: str | None = None) -> dict:
        message = {
            "id": message_id or self.snowflake(),
            "channel_id": str(CHANNEL_ID),
            "author": self.user(BOT_ID, "answerbot", bot=True),
            "content": body.get("content") or "",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": body.get("flags") or 0,
            "components": body.get("components") or [],
            "webhook_id": str(APP_ID),
            "application_id": str(APP_ID),
        }
        self.messages[message["id"]] = message
        return message

    async def handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = await request.json() if request.body_exists else None
        self.calls.append(Call(request.method, path, dict(request.query), body))
        route = f"{request.method} {path}"
        if route == "GET /users/@me":
            if self.reject_token:
                return respond({"message": "401: Unauthorized", "code": 0}, status=401)
            return respond(self.user(BOT_ID, "answerbot", bot=True))
        if route == "GET /oauth2/applications/@me":
            return respond(
                {
                    "id": str(APP_ID),
                    "name": "answerbot",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "0" * 64,
                    "flags": 0,
                    "owner": self.user(USER_ID, "owner"),
                }
            )
        if re.fullmatch(rf"PUT /applications/{APP_ID}/commands", route):
            return respond(
                [{**c, "id": self.snowflake(), "application_id": str(APP_ID), "version": "1"} for c in body]
            )
        if re.fullmatch(r"POST /interactions/\d+/[\w-]+/callback", route):
            interaction_id = path.split("/")[2]
            message = self.message(body.get("data") or {})
            return respond(
                {
                    "interaction": {
                        "id": interaction_id,
                        "type": 2,
                        "response_message_id": message["id"],
                        "response_message_loading": body["type"] == 5,
                        "response_message_ephemeral": bool((body.get("data") or {}).get("flags", 0) & 64),
                    },
                    "resource": {"type": body["type"], "message": message},
                }
            )
        if re.fullmatch(rf"POST /webhooks/{APP_ID}/[\w-]+", route):
            return respond(self.message(body))
        if re.fullmatch(rf"PATCH /webhooks/{APP_ID}/[\w-]+/messages/@original", route):
            return respond(self.message(body))
        return respond({"message": f"Unknown route {route}", "code": 0}, status=404)

    def interaction_calls(self, token: str) -> list[Call]:
        return [c for c in self.calls if token in c.path]

    def interaction(
        self,
        kind: int,
        data: dict,
        user_id: int = USER_ID,
        message: dict | None = None,
        channel: dict | None = None,
    ) -> dict:
        """An INTERACTION_CREATE payload (a guild text channel unless `channel`), as the gateway delivers it."""
        interaction_id = self.snowflake()
        payload = {
            "id": interaction_id,
            "application_id": str(APP_ID),
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "guild_id": str(GUILD_ID),
            "channel_id": str(CHANNEL_ID),
            "channel": {
                "id": str(CHANNEL_ID),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
            },
            "member": {
                "user": self.user(user_id, f"user{user_id}"),
                "roles": [],
                "joined_at": "2025-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "2147483647",
            },
            "app_permissions": "2147483647",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
            "attachment_size_limit": 10485760,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        if channel is not None:
            payload["channel"], payload["channel_id"] = channel, channel["id"]
        return payload

    def slash_ask(self, question: str, channel: dict | None = None) -> dict:
        option = {"name": "question", "type": 3, "value": question}
        data = {"id": self.snowflake(), "name": "ask", "type": 1, "options": [option]}
        return self.interaction(2, data, channel=channel)

    def click(self, message: dict, custom_id: str, user_id: int = USER_ID) -> dict:
        return self.interaction(3, {"custom_id": custom_id, "component_type": 2}, user_id, message)


@pytest.fixture
def fake_discord(monkeypatch):
    """Start FakeDiscord inside the test's event loop and point discord.py's routes at it."""

    @contextlib.asynccontextmanager
    async def running():
        fake = FakeDiscord()
        monkeypatch.setattr(discord.http.Route, "BASE", await fake.start())
        try:
            yield fake
        finally:
            await fake.stop()

    return running


@contextlib.asynccontextmanager
async def started_bot():
    """An AnswerBot through its real start-up (login, setup_hook); events are then fed to its state."""
    bot = AnswerBot()
    try:
        await bot.login("test-token")
        yield bot
    finally:
        await bot.close()


def buttons(message: dict) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


def test_slash_command_defers_then_answers_in_a_follow_up_with_vote_buttons(
    use_tiny_llm, handbook, fake_discord
):
    async def scenario():
        async with fake_discord() as fake, started_bot() as bot:
            [synced] = next(c.json for c in fake.calls if c.method == "PUT")
            assert synced["name"] == "ask" and synced["options"][0]["name"] == "question"
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: any(c.path.startswith("/webhooks") for c in fake.calls))
            await eventually(lambda: Answer.objects.exclude(message_id="").exists())
            return fake.interaction_calls(payload["token"])

    calls = asyncio.run(scenario())
    callback, follow_up = calls
    assert (callback.method, callback.json["type"]) == ("POST", 5)  # deferred: "answerbot is thinking…"
    assert follow_up.method == "POST" and follow_up.path.startswith(f"/webhooks/{APP_ID}/")
    assert follow_up.query.get("wait") == "1"  # the follow-up message comes back, with its id
    answer = Answer.objects.get()
    assert (answer.platform, answer.channel, answer.workspace) == ("discord", str(CHANNEL_ID), str(GUILD_ID))
    assert shown(answer) in follow_up.json["content"] and f"]({WIKI_URL})" in follow_up.json["content"]
    assert buttons(follow_up.json) == [f"answerbot:vote:+1:{answer.pk}", f"answerbot:vote:-1:{answer.pk}"]
    assert answer.message_id and answer.asker == hash_id("discord", str(USER_ID))


def test_vote_buttons_record_one_vote_per_user_and_survive_a_restart(use_tiny_llm, handbook, fake_discord):
    async def scenario():
        async with fake_discord() as fake:
            async with started_bot() as bot:
                bot._connection.parse_interaction_create(fake.slash_ask(QUESTION))
                await eventually(lambda: Answer.objects.exclude(message_id="").exists())
                answer = await discord_bot._off_loop(Answer.objects.get)
                message = fake.messages[answer.message_id]
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
    use_tiny_llm, handbook, fake_discord
):
    async def scenario():
        async with fake_discord() as fake:
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


def test_a_correction_beyond_the_daily_limit_is_refused_politely(use_tiny_llm, handbook, fake_discord):
    settings.CORRECTIONS_PER_DAY = 0

    async def scenario():
        async with fake_discord() as fake, started_bot() as bot:
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


def test_slash_command_in_a_server_that_is_not_allowed_is_refused(use_tiny_llm, handbook, fake_discord):
    settings.DISCORD_ALLOWED_GUILDS = frozenset({GUILD_ID + 1})

    async def scenario():
        async with fake_discord() as fake, started_bot() as bot:
            payload = fake.slash_ask(QUESTION)
            bot._connection.parse_interaction_create(payload)
            await eventually(lambda: len(fake.interaction_calls(payload["token"])) == 1)
            return fake.interaction_calls(payload["token"])

    [refusal] = asyncio.run(scenario())
    assert refusal.json["type"] == 4 and refusal.json["data"]["content"] == discord_bot.NOT_ALLOWED
    assert not Answer.objects.exists()


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
    use_tiny_llm, handbook, fake_discord
):
    async def scenario():
        async with fake_discord() as fake, started_bot() as bot:
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
    async def scenario():
        async with fake_discord() as fake:
            fake.reject_token = True
            with pytest.raises(discord.LoginFailure):
                await serve("bad-token", sleep=pytest.fail)

    asyncio.run(scenario())


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
