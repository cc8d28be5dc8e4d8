"""The Discord bot: `/ask`, `!ask` and @mentions answered by console.conversations.answering; 👍/👎 recorded as Feedback.

A thin adapter. Everything that touches the database or the model runs in a worker thread
(`_off_loop`), never on the event loop, so the gateway heartbeat keeps going while a small
model thinks for seconds. Channel ids are recorded as the answering service expects: platform
"discord", channel = the channel (a thread's parent channel), workspace = the guild, thread =
the Discord thread, if any; so collection scopes `discord:<channel or guild id>` apply.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import close_old_connections

from bots.discord.format import answer_messages, strip_mention, vote_value
from bots.text import clean_question
from console.conversations.answering import ChannelDisabled, answer
from console.conversations.threads import answer_for_message, attach_message, thread_history
from console.conversations.votes import record_feedback, withdraw_feedback

if TYPE_CHECKING:
    from console.conversations.models import Answer

logger = logging.getLogger(__name__)

PLATFORM = "discord"
PREFIX = "!"
USAGE = "Ask me something: `!ask How do I request leave?`, `/ask`, or mention me with your question."
FAILED = "Sorry, I couldn't answer that just now (the error is in the bot's log). Please try again."
SWITCHED_OFF = "I'm switched off in this channel; an admin can turn me on in the console."
VOTE_THANKS = {1: "Thanks for the 👍, it's recorded.", -1: "Thanks for the 👎, it's recorded."}
VOTE_LOST = "That answer is no longer on record, so the vote wasn't counted."
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


async def _off_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run database or model work in a worker thread, with connections handled as a request would."""

    def call() -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await asyncio.to_thread(call)


def _ask(question: str, place: Where, user_id: int) -> Answer:
    history = thread_history(PLATFORM, place.channel, place.thread)
    return answer(
        question,
        platform=PLATFORM,
        channel=place.channel,
        workspace=place.workspace,
        thread=place.thread,
        user=str(user_id),
        history=history,
    )


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

    Registered with `add_dynamic_items` at start-up: buttons on answers given before a restart
    keep working.
    """

    def __init__(self, answer_id: int, value: int) -> None:
        self.answer_id = answer_id
        self.value = value
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji="👍" if value > 0 else "👎",
                custom_id=f"answerbot:vote:{value:+d}:{answer_id}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VoteButton:
        return cls(int(match["answer_id"]), int(match["value"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await _off_loop(_vote, self.answer_id, interaction.user.id, self.value)
        except ObjectDoesNotExist:
            await interaction.response.send_message(VOTE_LOST, ephemeral=True)
            return
        await interaction.response.send_message(VOTE_THANKS[self.value], ephemeral=True)


def vote_view(answer_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(VoteButton(answer_id, 1))
    view.add_item(VoteButton(answer_id, -1))
    return view


async def deliver(
    reply: Answer, send_first: Callable[..., Any], send_rest: Callable[..., Any], *, note: str = ""
) -> None:
    """Send an answer in pieces within Discord's limit, the last one with the vote buttons, and
    remember that last message so reactions on it find the answer."""
    messages = answer_messages(reply.text, reply.sources, note=note)
    sent = None
    for number, content in enumerate(messages, 1):
        extra = {"view": vote_view(reply.pk)} if number == len(messages) else {}
        sent = await (send_first if number == 1 else send_rest)(content, suppress_embeds=True, **extra)
    if sent is not None:  # answer_messages always gives at least one piece
        await _off_loop(attach_message, reply, str(sent.id))


class Answering(commands.Cog):
    """The commands and listeners: questions in, answers out, votes recorded."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @commands.command(name="ask", help="Ask a question: !ask <question>")
    async def ask_prefix(self, ctx: commands.Context, *, question: str = "") -> None:
        await self.answer_message(ctx.message, question)

    @app_commands.command(name="ask", description="Ask the team's answer bot a question.")
    @app_commands.describe(question="What do you want to know?")
    async def ask_slash(self, interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)  # Discord wants a response within 3 s
        question, note = clean_question(question, settings.QUESTION_MAX_CHARS)
        place = where(interaction.channel, interaction.channel_id, interaction.guild_id)
        try:
            reply = await _off_loop(_ask, question, place, interaction.user.id)
        except ChannelDisabled:
            await interaction.followup.send(SWITCHED_OFF, ephemeral=True)
            return
        except Exception:
            logger.exception("discord /ask failed in %s", place)
            await interaction.followup.send(FAILED, ephemeral=True)
            return
        follow_up = functools.partial(interaction.followup.send, wait=True)
        await deliver(reply, follow_up, follow_up, note=note)

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
        """Answer in a reply to `message`; the last piece carries the sources and the vote buttons."""
        question, note = clean_question(question, settings.QUESTION_MAX_CHARS)
        if not question:
            await message.reply(USAGE, mention_author=False)
            return
        place = where(message.channel, message.channel.id, message.guild.id if message.guild else None)
        try:
            async with message.channel.typing():
                reply = await _off_loop(_ask, question, place, message.author.id)
        except ChannelDisabled:
            logger.info("discord question ignored: switched off in %s", place)
            return
        except Exception:
            logger.exception("discord question failed in %s", place)
            await message.reply(FAILED, mention_author=False)
            return
        reply_to = functools.partial(message.reply, mention_author=False)
        await deliver(reply, reply_to, message.channel.send, note=note)

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
