"""The Discord gateway: `/ask`, `!ask`, mentions and DMs written down as questions; 👍/👎 recorded as Feedback.

A question is written down and queued (console.conversations.questions.take, event id
`interaction:<id>` or `message:<id>`) and an answer worker (`rqworker answer`) answers it and
replies over Discord's REST API (bots/discord/replies.py). So the gateway never loads the model,
and a restart of it loses no question. /ask is deferred first (Discord wants a response within
3 s; the worker then edits that response); when the question cannot be taken, the asker is told.

It answers only in the servers listed in DISCORD_ALLOWED_GUILDS, and in direct messages only to
members of one of them; a server it was added to but not allowed gets a warning in the log and
no answers. A 👎 button opens a form asking what was wrong and, optionally, for a better answer
(a candidate correction pair); its custom id carries the answer, so a form sent before a restart
is still received after it.

A thin adapter. Everything that touches the database or Redis runs in a worker thread
(`_off_loop`), never on the event loop, so the gateway heartbeat keeps going. Channel ids are
recorded as the answering service expects: platform "discord", channel = the channel (a thread's
parent channel), workspace = the guild, thread = the Discord thread, if any; so collection scopes
`discord:<channel or guild id>` apply.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import close_old_connections

from bots.discord.format import asked_line, strip_mention, vote_custom_id, vote_value
from bots.text import clean_question
from console.conversations import questions
from console.conversations.answering import ChannelDisabled
from console.conversations.models import Feedback, Question
from console.conversations.threads import answer_for_message
from console.conversations.votes import (
    CorrectionRefused,
    record_feedback,
    record_follow_up,
    withdraw_feedback,
)

logger = logging.getLogger(__name__)

PLATFORM = "discord"
PREFIX = "!"
USAGE = "Ask me something: `!ask How do I request leave?`, `/ask`, or mention me with your question."
FAILED = "Sorry, I couldn't answer that just now (the error is in the bot's log). Please try again."
SWITCHED_OFF = "I'm switched off in this channel; an admin can turn me on in the console."
VOTE_THANKS = {1: "Thanks for the 👍, it's recorded.", -1: "Thanks for the 👎, it's recorded."}
VOTE_LOST = "That answer is no longer on record, so the vote wasn't counted."
NOT_ALLOWED = "I only answer in the servers my operators allowed, and in DMs to their members."
FOLLOW_UP_THANKS = "Thanks, your feedback is recorded."
CORRECTION_THANKS = "Thanks, your feedback is recorded and your better answer waits for a curator's review."
FEEDBACK_FORM = re.compile(r"answerbot:feedback:(?P<answer_id>[0-9]+)")
CATEGORY, REASON, BETTER_ANSWER = "category", "reason", "better_answer"
MEMBERSHIP_CACHE_SECONDS = 300.0
RETRYABLE = (
    OSError,
    asyncio.TimeoutError,
    aiohttp.ClientError,
    discord.GatewayNotFound,
    discord.ConnectionClosed,
    discord.DiscordServerError,
)


@dataclass(frozen=True)
class Where:
    """Where on Discord a question was asked, in the answering service's terms."""

    channel: str
    workspace: str = ""
    thread: str = ""


def where(channel: Any, channel_id: int | None, guild_id: int | None) -> Where:
    workspace = str(guild_id) if guild_id else ""
    if isinstance(channel, discord.Thread) and channel.parent_id:
        return Where(str(channel.parent_id), workspace, str(channel.id))
    return Where(str(channel_id or getattr(channel, "id", None) or ""), workspace)


def allowed_guild(guild_id: int | None) -> bool:
    """Whether the bot may answer in this server (DISCORD_ALLOWED_GUILDS; empty: none)."""
    return guild_id is not None and guild_id in settings.DISCORD_ALLOWED_GUILDS


_members: dict[int, tuple[float, bool]] = {}


async def member_of_allowed_guild(bot: discord.Client, user_id: int) -> bool:
    """Whether a user shares an allowed server with the bot (for DMs); remembered a few minutes.

    The member cache answers when the members intent is on; otherwise one REST lookup a server
    (GET /guilds/{id}/members/{user}, which needs no privileged intent).
    """
    remembered = _members.get(user_id)
    if remembered and time.monotonic() - remembered[0] < MEMBERSHIP_CACHE_SECONDS:
        return remembered[1]
    member = False
    for guild_id in settings.DISCORD_ALLOWED_GUILDS:
        guild = bot.get_guild(guild_id)
        if guild is None:
            continue
        if guild.get_member(user_id) is not None:
            member = True
            break
        try:
            await guild.fetch_member(user_id)
        except (discord.NotFound, discord.Forbidden):
            continue
        member = True
        break
    _members[user_id] = (time.monotonic(), member)
    return member


async def may_answer(bot: discord.Client, guild_id: int | None, user_id: int) -> bool:
    """In a server: it is allowed. In a DM: the person is a member of an allowed server."""
    if guild_id is not None:
        return allowed_guild(guild_id)
    return await member_of_allowed_guild(bot, user_id)


def warn_if_not_allowed(guild: discord.Guild) -> None:
    if not allowed_guild(guild.id):
        logger.warning(
            "discord: the bot is in server %s (%s), which is not in DISCORD_ALLOWED_GUILDS; it does not "
            "answer there. Add the id to DISCORD_ALLOWED_GUILDS, or remove the bot from that server.",
            guild.id,
            guild.name,
        )


async def _off_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run database or model work in a worker thread, with connections handled as a request would."""

    def call() -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await asyncio.to_thread(call)


def _take(event_id: str, place: Where, user_id: int, text: str, note: str, **fields: Any) -> Question | None:
    """Write the question down and queue it for an answer worker (None: a redelivery of one
    already taken). Raises ChannelDisabled, or questions.NotTaken with words for the asker."""
    return questions.take(
        PLATFORM,
        event_id,
        user=str(user_id),
        channel=place.channel,
        workspace=place.workspace,
        thread=place.thread,
        text=text,
        note=note,
        **fields,
    )


async def _typing(channel: discord.abc.Messageable) -> None:
    """Show the bot typing for a few seconds (the answer worker shows it again when it starts)."""
    try:
        await channel.typing()
    except discord.HTTPException as error:
        logger.info("discord: no typing indicator (%s)", error)


def _answer_id_for_message(place: Where, message_id: int) -> int | None:
    found = answer_for_message(PLATFORM, place.channel, str(message_id))
    return found.pk if found else None


def _vote(answer_id: int, user_id: int, value: int) -> None:
    record_feedback(answer_id, platform=PLATFORM, voter=str(user_id), value=value)


def _withdraw(answer_id: int, user_id: int, value: int) -> None:
    withdraw_feedback(answer_id, platform=PLATFORM, voter=str(user_id), value=value)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"answerbot:vote:(?P<value>[+-]1):(?P<answer_id>[0-9]+)",
):
    """A 👍 or 👎 button whose custom id carries the answer id, so it works on any answer, any time.

    Registered with `add_dynamic_items` at start-up, it handles the clicks on the buttons answer
    workers post (format.vote_components), before and after a restart.
    """

    def __init__(self, answer_id: int, value: int) -> None:
        self.answer_id = answer_id
        self.value = value
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="👍" if value > 0 else "👎",
                custom_id=vote_custom_id(answer_id, value),
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VoteButton:
        return cls(int(match["answer_id"]), int(match["value"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        """Record the vote; a 👎 then opens the form asking what was wrong."""
        if not await may_answer(interaction.client, interaction.guild_id, interaction.user.id):
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        try:
            await _off_loop(_vote, self.answer_id, interaction.user.id, self.value)
        except ObjectDoesNotExist:
            await interaction.response.send_message(VOTE_LOST, ephemeral=True)
            return
        if self.value < 0:
            await interaction.response.send_modal(FeedbackForm(self.answer_id))
            return
        await interaction.response.send_message(VOTE_THANKS[self.value], ephemeral=True)


class FeedbackForm(discord.ui.Modal):
    """The 👎 follow-up, as Slack's: what was wrong (Feedback.Category), details, a better answer.

    Only the form: its submission is handled by `Answering.on_interaction`, by custom id, so a form
    opened before a restart still counts after it.
    """

    def __init__(self, answer_id: int) -> None:
        super().__init__(title="What was wrong?", custom_id=f"answerbot:feedback:{answer_id}", timeout=900)
        options = [
            discord.SelectOption(label=label, value=value) for value, label in Feedback.Category.choices
        ]
        self.add_item(
            discord.ui.Label(
                text="What was wrong with the answer?",
                component=discord.ui.Select(custom_id=CATEGORY, options=options, min_values=1, max_values=1),
            )
        )
        self.add_item(
            discord.ui.Label(
                text="Details",
                description="Optional: what exactly was wrong",
                component=discord.ui.TextInput(
                    custom_id=REASON, style=discord.TextStyle.paragraph, required=False, max_length=1000
                ),
            )
        )
        self.add_item(
            discord.ui.Label(
                text="A better answer",
                description="Optional: what the bot should have said (a curator reviews it)",
                component=discord.ui.TextInput(
                    custom_id=BETTER_ANSWER,
                    style=discord.TextStyle.paragraph,
                    required=False,
                    max_length=4000,
                ),
            )
        )


def submitted_values(components: list[dict]) -> dict[str, str]:
    """custom id → value of every input in a submitted modal, whether in labels or action rows."""
    values: dict[str, str] = {}
    for component in components:
        if "custom_id" in component:
            picked = component.get("values") or [component.get("value") or ""]
            values[component["custom_id"]] = picked[0]
        nested = [component["component"]] if "component" in component else component.get("components", [])
        values.update(submitted_values(nested))
    return values


def _follow_up(answer_id: int, user_id: int, values: dict[str, str]) -> str:
    """Record a submitted 👎 form; the message for the person who sent it."""
    better = values.get(BETTER_ANSWER, "")
    record_follow_up(
        answer_id,
        platform=PLATFORM,
        voter=str(user_id),
        category=values.get(CATEGORY, ""),
        reason=values.get(REASON, ""),
        better_answer=better,
    )
    return CORRECTION_THANKS if better.strip() else FOLLOW_UP_THANKS


class Answering(commands.Cog):
    """The commands and listeners: questions written down for the answer workers, votes recorded."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @commands.command(name="ask", help="Ask a question: !ask <question>")
    async def ask_prefix(self, ctx: commands.Context, *, question: str = "") -> None:
        await self.answer_message(ctx.message, question)

    @app_commands.command(name="ask", description="Ask the team's answer bot a question.")
    @app_commands.describe(question="What do you want to know?")
    async def ask_slash(self, interaction: discord.Interaction, question: str) -> None:
        if not await may_answer(self.bot, interaction.guild_id, interaction.user.id):
            logger.info("discord /ask refused: server %s is not allowed", interaction.guild_id or "(DM)")
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        question, note = clean_question(question, settings.QUESTION_MAX_CHARS)
        if not question:
            await interaction.response.send_message(USAGE, ephemeral=True)
            return
        # Deferred before the question is queued, so the worker always finds a response to edit.
        await interaction.response.defer(thinking=True)
        place = where(interaction.channel, interaction.channel_id, interaction.guild_id)
        try:
            await _off_loop(
                _take,
                f"interaction:{interaction.id}",
                place,
                interaction.user.id,
                question,
                note,
                interaction=f"{interaction.application_id}:{interaction.token}",
                asked=asked_line(interaction.user.id, question),
            )
        except ChannelDisabled:
            await interaction.followup.send(SWITCHED_OFF, ephemeral=True)
        except questions.NotTaken as refused:
            await interaction.followup.send(str(refused), ephemeral=True)
        except Exception:
            logger.exception("discord /ask not taken in %s", place)
            await interaction.followup.send(FAILED, ephemeral=True)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """@mentions, and anything said to the bot in a direct message, are questions."""
        me = self.bot.user
        if message.author.bot or me is None:
            return
        direct = isinstance(message.channel, discord.DMChannel)
        if not direct and me.id not in message.raw_mentions:
            return
        if (await self.bot.get_context(message)).valid:
            return  # "!ask @bot ...": the command answers it
        await self.answer_message(message, strip_mention(message.content, me.id))

    async def answer_message(self, message: discord.Message, question: str) -> None:
        """Write `message`'s question down for an answer worker, which replies to it; the asker
        sees the bot typing meanwhile.

        Not in a server that is not allowed (silently: the log warned at start-up); a DM from someone
        in no allowed server is told so, and so is anyone whose question could not be taken.
        """
        guild_id = message.guild.id if message.guild else None
        if not await may_answer(self.bot, guild_id, message.author.id):
            logger.info("discord question ignored: server %s is not allowed", guild_id or "(DM)")
            if guild_id is None:
                await message.reply(NOT_ALLOWED, mention_author=False)
            return
        question, note = clean_question(question, settings.QUESTION_MAX_CHARS)
        if not question:
            await message.reply(USAGE, mention_author=False)
            return
        place = where(message.channel, message.channel.id, guild_id)
        try:
            taken = await _off_loop(
                _take,
                f"message:{message.id}",
                place,
                message.author.id,
                question,
                note,
                reply_to=str(message.id),
            )
        except ChannelDisabled:
            logger.info("discord question ignored: switched off in %s", place)
            return
        except questions.NotTaken as refused:
            await message.reply(str(refused), mention_author=False)
            return
        except Exception:
            logger.exception("discord question not taken in %s", place)
            await message.reply(FAILED, mention_author=False)
            return
        if taken is not None:
            await _typing(message.channel)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A submitted 👎 form (FeedbackForm), recognised by its custom id, before or after a restart."""
        data: dict[str, Any] = dict(interaction.data or {})
        match = FEEDBACK_FORM.fullmatch(str(data.get("custom_id", "")))
        if interaction.type != discord.InteractionType.modal_submit or match is None:
            return
        if not await may_answer(self.bot, interaction.guild_id, interaction.user.id):
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        values = submitted_values(list(data.get("components", [])))
        try:
            said = await _off_loop(_follow_up, int(match["answer_id"]), interaction.user.id, values)
        except ObjectDoesNotExist:
            said = VOTE_LOST
        except (CorrectionRefused, ValueError) as refused:
            said = str(refused)
        await interaction.response.send_message(said, ephemeral=True)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """A 👍/👎 on one of the bot's answers is a vote, like the buttons; bots' reactions are not."""
        voter = payload.member or self.bot.get_user(payload.user_id)
        if voter is not None and voter.bot:
            return
        if vote := await self._reaction_vote(payload):
            await _off_loop(_vote, *vote)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        """Removing a 👍/👎 from one of the bot's answers takes that vote back."""
        if vote := await self._reaction_vote(payload):
            await _off_loop(_withdraw, *vote)

    async def _reaction_vote(self, payload: discord.RawReactionActionEvent) -> tuple[int, int, int] | None:
        """(answer id, user id, +1/-1) for a 👍/👎 by someone else on one of the bot's answers, else None.

        A removal's payload carries no message author; the answer lookup still finds only ours.
        """
        value = vote_value(str(payload.emoji))
        me = self.bot.user
        if value is None or me is None or payload.user_id == me.id:
            return None
        if not await may_answer(self.bot, payload.guild_id, payload.user_id):
            return None
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return None
        place = where(self.bot.get_channel(payload.channel_id), payload.channel_id, payload.guild_id)
        answer_id = await _off_loop(_answer_id_for_message, place, payload.message_id)
        return (answer_id, payload.user_id, value) if answer_id is not None else None


def bot_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True  # privileged: needed to read `!ask` and mention text
    return intents


class AnswerBot(commands.Bot):
    """The bot: the Answering cog, the vote buttons registered, the slash command synced."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", bot_intents())
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=PREFIX, help_command=None, **options)
        self.was_ready = False

    async def setup_hook(self) -> None:
        await self.install()
        synced = await self.tree.sync()
        logger.info("discord slash commands synced: %s", ", ".join(c.name for c in synced))

    async def install(self) -> None:
        """Add the commands and listeners, and the vote buttons for every answer ever given."""
        self.add_dynamic_items(VoteButton)
        await self.add_cog(Answering(self))

    async def on_ready(self) -> None:
        self.was_ready = True
        logger.info("discord bot ready as %s in %d guild(s)", self.user, len(self.guilds))
        if not settings.DISCORD_ALLOWED_GUILDS:
            logger.warning(
                "discord: DISCORD_ALLOWED_GUILDS is empty, so the bot answers in no server and no DMs. "
                "Set it to your server ids (comma-separated)."
            )
        for guild in self.guilds:
            warn_if_not_allowed(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        warn_if_not_allowed(guild)


async def serve(
    token: str,
    *,
    make_bot: Callable[[], commands.Bot] = AnswerBot,
    first_delay: float = 2.0,
    max_delay: float = 300.0,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> None:
    """Run the bot until it is closed, starting over with exponential back-off when connecting fails.

    discord.py resumes dropped gateway sessions itself (reconnect=True); this loop covers what it
    gives up on: failed logins for network reasons, Discord outages. A rejected token or a missing
    privileged intent is raised at once, since retrying cannot fix it.
    """
    delay = first_delay
    while True:
        bot = make_bot()
        try:
            async with bot:
                await bot.start(token, reconnect=True)
            return
        except RETRYABLE as error:
            if getattr(bot, "was_ready", False):
                delay = first_delay  # it was up: a new outage starts the back-off again
            wait = delay * random.uniform(1.0, 1.25)
            logger.warning(
                "discord connection failed (%s: %s); retrying in %.1f s", type(error).__name__, error, wait
            )
            await sleep(wait)
            delay = min(delay * 2, max_delay)
