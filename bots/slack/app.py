"""Slack adapter: bolt listeners that turn mentions, DMs, /ask, buttons and reactions into console calls.

One App factory serves both HTTP mode (bots.slack.views at POST /slack/events) and Socket Mode
(`manage.py runslackbot`). Listeners acknowledge at once; answers are generated on a small thread
pool, behind a "Thinking…" placeholder that is then updated in place with the answer.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache

from django.conf import settings
from django.db import connections
from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.listener.listener_completion_handler import ListenerCompletionHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler, default_retry_handlers

from bots.slack import blocks
from bots.text import clean_question
from console.conversations import answering
from console.conversations.deliveries import first_delivery
from console.conversations.threads import answer_for_message, attach_message, thread_history
from console.conversations.votes import (
    CorrectionRefused,
    record_feedback,
    record_follow_up,
    withdraw_feedback,
)

logger = logging.getLogger(__name__)

PLATFORM = "slack"
ANSWER_THREADS = 4  # generation is serialised per model anyway; more threads only queue
LISTENER_THREADS = 8
REACTION_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
BUTTON_VOTES = {blocks.VOTE_UP: 1, blocks.VOTE_DOWN: -1}


@dataclass(frozen=True)
class Question:
    text: str
    channel: str
    user: str
    workspace: str = ""
    thread: str | None = ""  # the thread replied in; "": none (a DM); None: the reply starts one (/ask)
    asked: str = ""  # a line quoting the question above the answer (/ask)
    note: str = ""  # told to the asker above the answer (their question was cut to the limit)
    shared: bool = False  # people outside the workspace read the channel: only channel scopes apply


@cache
def _answer_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=ANSWER_THREADS, thread_name_prefix="slack-answer")


@cache
def _listener_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="slack-listener")


class _ReleaseDatabase(ListenerCompletionHandler):
    """Listener threads are bolt's, not Django's: close their connections once a listener is done."""

    def handle(self, request: BoltRequest, response: BoltResponse | None) -> None:
        connections.close_all()


def web_client() -> WebClient:
    """The bot's Web API client: SLACK_API_URL, and a 429 is retried after Slack's Retry-After."""
    handlers = [*default_retry_handlers(), RateLimitErrorRetryHandler(max_retry_count=3)]
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, retry_handlers=handlers)


def build_app(*, socket_mode: bool = False) -> App:
    """The bolt App, configured from settings at call time.

    HTTP mode verifies every request's signature (401 otherwise) and checks the token lazily on the
    first verified request; Socket Mode needs no signing secret and checks the token at once.
    """
    app = App(
        name="answerbot",
        client=web_client(),
        signing_secret=settings.SLACK_SIGNING_SECRET,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=socket_mode,
        listener_executor=_listener_pool(),
    )
    app.listener_runner.listener_completion_handler = _ReleaseDatabase()
    app.middleware(skip_repeated_events)
    app.event("app_mention")(on_mention)
    app.event("message")(on_message)
    app.command("/ask")(on_ask)
    app.action(blocks.VOTE_UP)(on_vote_button)
    app.action(blocks.VOTE_DOWN)(on_vote_button)
    app.view(blocks.FEEDBACK_FORM)(on_feedback_form)
    app.event("reaction_added")(on_reaction)
    app.event("reaction_removed")(on_reaction_removed)
    return app


# --- listeners ------------------------------------------------------------------------------


def skip_repeated_events(body, next):
    """Slack retries an event it thinks we missed; answer the first delivery only."""
    if body.get("type") == "event_callback" and not first_delivery(PLATFORM, body.get("event_id", "")):
        return BoltResponse(status=200, body="")
    return next()


def on_mention(body, event, context, client):
    """A mention in a channel: answered in the thread it starts (or continues)."""
    thread = event.get("thread_ts") or event["ts"]
    question = _without_mention(event.get("text", ""), context.bot_user_id)
    shared = is_shared_channel(client, event["channel"], hint=bool(body.get("is_ext_shared_channel")))
    start_answer(client, Question(question, **_origin(event), thread=thread, shared=shared))


def on_message(event, client):
    """Direct messages; bots (this one included) and edits or joins (subtypes) are ignored."""
    if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
        return
    thread = event.get("thread_ts", "")
    start_answer(client, Question(event.get("text", "").strip(), **_origin(event), thread=thread))


def on_ask(ack, command, client, respond):
    question = command.get("text", "").strip()
    if not question:
        ack("Ask a question after the command, e.g. `/ask How do I get VPN access?`")
        return
    ack()
    asked = Question(
        question,
        channel=command["channel_id"],
        user=command["user_id"],
        workspace=command.get("team_id", ""),
        thread=None,
        asked=f"<@{command['user_id']}> asked: {blocks.escape(clean_question(question, 500)[0])}",
        shared=is_shared_channel(
            client, command["channel_id"], hint=bool(command.get("is_ext_shared_channel"))
        ),
    )
    try:
        if not start_answer(client, asked):
            respond("I'm switched off in this channel; an admin can turn me on in the console.")
    except SlackApiError as error:
        logger.warning("/ask in %s: cannot post (%s)", asked.channel, error.response.get("error"))
        respond("I can't post in this channel. Invite me with `/invite @answerbot`, or ask me in a DM.")


def on_vote_button(ack, body, action, client):
    ack()
    user, value = body["user"]["id"], BUTTON_VOTES[action["action_id"]]
    record_feedback(int(action["value"]), platform=PLATFORM, voter=user, value=value)
    if value < 0:
        client.views_open(trigger_id=body["trigger_id"], view=blocks.feedback_form(int(action["value"])))
    elif channel := (body.get("channel") or {}).get("id"):
        thread = (body.get("message") or {}).get("thread_ts")
        client.chat_postEphemeral(
            channel=channel, user=user, thread_ts=thread, text="Thanks for the 👍, noted."
        )


def on_feedback_form(ack, body, view):
    """A 👎's details go on the vote; a better answer becomes a candidate correction, or the form
    says why not (the person's daily limit, or a curator already reviewed theirs)."""
    answer_id, category, reason, better = blocks.submitted_feedback(view)
    try:
        record_follow_up(
            answer_id,
            platform=PLATFORM,
            voter=body["user"]["id"],
            category=category,
            reason=reason,
            better_answer=better,
        )
    except CorrectionRefused as refused:
        ack(response_action="errors", errors={blocks.BETTER_BLOCK: str(refused)})
        return
    ack()


def on_reaction(event, context, client):
    """👍/👎 reactions on the bot's own replies are votes; reactions by bots are not."""
    vote = _reaction_vote(event, context)
    if vote and not is_bot(client, vote[1]):
        record_feedback(vote[0], platform=PLATFORM, voter=vote[1], value=vote[2])


def on_reaction_removed(event, context):
    """Removing a 👍/👎 reaction takes that vote back (a bot's never counted, so nothing to check)."""
    vote = _reaction_vote(event, context)
    if vote:
        withdraw_feedback(vote[0], platform=PLATFORM, voter=vote[1], value=vote[2])


def _reaction_vote(event: dict, context: BoltContext) -> tuple[int, str, int] | None:
    """(answer id, voter, +1/-1) for a 👍/👎 reaction on one of the bot's replies, else None."""
    value = REACTION_VOTES.get(event.get("reaction", "").split("::")[0])  # "+1::skin-tone-2"
    item, voter = event.get("item") or {}, event.get("user", "")
    if value is None or item.get("type") != "message" or voter == context.bot_user_id:
        return None
    if event.get("item_user") not in (None, context.bot_user_id):
        return None
    reply = answer_for_message(PLATFORM, item.get("channel", ""), item.get("ts", ""))
    return (reply.pk, voter, value) if reply is not None else None


# --- answering ------------------------------------------------------------------------------


def _without_mention(text: str, bot_user: str | None) -> str:
    """The question without the bot's own <@U…> mention; other people's mentions stay."""
    who = re.escape(bot_user) if bot_user else "[A-Z0-9]+"
    return re.sub(rf"<@{who}(?:\|[^>]*)?>", "", text).strip()


def _origin(event: dict) -> dict:
    return {"channel": event["channel"], "user": event.get("user", ""), "workspace": event.get("team", "")}


def start_answer(client: WebClient, question: Question) -> bool:
    """Post the placeholder and queue the answer; False (and nothing posted) in a disabled channel."""
    if not answering.channel_config(PLATFORM, question.channel).enabled:
        logger.info("slack %s: switched off, question not answered", question.channel)
        return False
    text, note = clean_question(question.text, settings.QUESTION_MAX_CHARS)
    question = replace(question, text=text, note=note)
    if not question.text:
        client.chat_postMessage(channel=question.channel, thread_ts=question.thread or None, text=blocks.HINT)
        return True
    placeholder = client.chat_postMessage(
        channel=question.channel,
        thread_ts=question.thread or None,
        text=f"{question.asked}\n{blocks.THINKING}" if question.asked else blocks.THINKING,
    )
    _answer_pool().submit(_answer_and_reply, client, question, placeholder["ts"])
    return True


def _answer_and_reply(client: WebClient, question: Question, placeholder: str) -> None:
    """Runs on the answer pool: generate, then replace the placeholder (more messages if long)."""
    thread = placeholder if question.thread is None else question.thread
    try:
        reply = answering.answer(
            question.text,
            platform=PLATFORM,
            channel=question.channel,
            user=question.user,
            workspace=question.workspace,
            thread=thread,
            history=thread_history(PLATFORM, question.channel, thread),
            shared_channel=question.shared,
        )
        attach_message(reply, placeholder)
        messages = blocks.answer_messages(
            reply.pk, reply.text, reply.sources, asked=question.asked, note=question.note
        )
        client.chat_update(channel=question.channel, ts=placeholder, **messages[0])
        for more in messages[1:]:
            client.chat_postMessage(channel=question.channel, thread_ts=thread or None, **more)
        logger.info("slack %s: answer %s posted as %s", question.channel, reply.pk, placeholder)
    except answering.ChannelDisabled:
        client.chat_delete(channel=question.channel, ts=placeholder)
    except Exception:
        logger.exception("slack %s: answering failed", question.channel)
        _say_sorry(client, question.channel, placeholder)
    finally:
        connections.close_all()


def _say_sorry(client: WebClient, channel: str, placeholder: str) -> None:
    try:
        client.chat_update(channel=channel, ts=placeholder, text=blocks.SORRY)
    except Exception:
        logger.exception("slack %s: could not replace placeholder %s", channel, placeholder)


SHARED_CACHE_SECONDS = 300.0
_shared_channels: dict[str, tuple[float, bool]] = {}


def is_shared_channel(client: WebClient, channel: str, *, hint: bool = False) -> bool:
    """Whether people outside this workspace read `channel` (Slack Connect, or shared across an
    organisation's workspaces): then a workspace's collections must not answer there.

    The event's own `is_ext_shared_channel` settles it; otherwise conversations.info, remembered a
    few minutes. A direct message is read by its asker only. When Slack cannot tell (an error, a
    missing scope), the channel counts as shared: the answer then reads only channel-scoped collections.
    """
    if hint:
        return True
    if channel.startswith("D"):
        return False
    remembered = _shared_channels.get(channel)
    if remembered and time.monotonic() - remembered[0] < SHARED_CACHE_SECONDS:
        return remembered[1]
    try:
        info = client.conversations_info(channel=channel)["channel"]
    except SlackApiError as error:
        logger.warning(
            "conversations.info %s failed (%s); answering from channel-scoped collections only",
            channel,
            error.response.get("error"),
        )
        return True
    shared = any(
        info.get(flag) for flag in ("is_ext_shared", "is_shared", "is_org_shared", "is_pending_ext_shared")
    )
    _shared_channels[channel] = (time.monotonic(), shared)
    return shared


_bot_users: dict[str, bool] = {"USLACKBOT": True}


def is_bot(client: WebClient, user: str) -> bool:
    """Whether a user id is a bot or app (users.info, remembered); unknown counts as a person."""
    if user not in _bot_users:
        try:
            profile = client.users_info(user=user)["user"]
        except SlackApiError as error:
            logger.warning("users.info %s failed (%s); counting the vote", user, error.response.get("error"))
            return False
        _bot_users[user] = bool(profile.get("is_bot"))
    return _bot_users[user]
