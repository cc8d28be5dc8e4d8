"""Slack adapter: bolt listeners that turn mentions, DMs, /ask, buttons and reactions into console calls.

One App factory serves both HTTP mode (bots.slack.views at POST /slack/events) and Socket Mode
(`manage.py runslackbot`). A question is written down and queued (console.conversations.questions)
before Slack is acknowledged; when that fails the event is not acknowledged, so Slack delivers it
again. After the acknowledgement the listener posts a "Thinking…" placeholder, which an answer
worker (`rqworker answer`) replaces with the answer.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from django.conf import settings
from django.db import connections
from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.listener.listener_completion_handler import ListenerCompletionHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots.slack import blocks
from bots.slack.replies import ensure_placeholder, web_client
from bots.text import clean_question
from console.conversations import questions
from console.conversations.answering import ChannelDisabled
from console.conversations.deliveries import first_delivery
from console.conversations.models import Question
from console.conversations.threads import answer_for_message
from console.conversations.votes import (
    CorrectionRefused,
    record_feedback,
    record_follow_up,
    withdraw_feedback,
)

logger = logging.getLogger(__name__)

PLATFORM = "slack"
LAST_RETRY = 3  # Slack retries an event three times; after that it is dropped
LISTENER_THREADS = 8
REACTION_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
BUTTON_VOTES = {blocks.VOTE_UP: 1, blocks.VOTE_DOWN: -1}


@cache
def _listener_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="slack-listener")


class _ReleaseDatabase(ListenerCompletionHandler):
    """Listener threads are bolt's, not Django's: close their connections once a listener is done."""

    def handle(self, request: BoltRequest, response: BoltResponse | None) -> None:
        connections.close_all()


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
    app.middleware(take_questions)
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


def take_questions(body, request, context, client, next):
    """Before Slack's acknowledgement: a question event is written down and queued (see
    console.conversations.questions), other events are de-duplicated by event id.

    When the question cannot be taken the event is not acknowledged (a 500), so Slack retries it;
    its last retry is acknowledged and the asker told to ask again later.
    """
    if body.get("type") != "event_callback":
        return next()
    event, event_id = body.get("event") or {}, body.get("event_id", "")
    fields = question_fields(event, context.bot_user_id, shared=bool(body.get("is_ext_shared_channel")))
    if fields is None and event.get("type") in ("app_mention", "message") and not _well_formed(event):
        logger.warning("slack event %s (%s) is malformed; ignored", event_id, event.get("type"))
    if fields is None or not fields["text"]:
        return next() if first_delivery(PLATFORM, event_id) else BoltResponse(status=200, body="")
    try:
        context["question"] = questions.take(PLATFORM, event_id, **fields)
    except ChannelDisabled:
        logger.info("slack %s: switched off, question not answered", fields["channel"])
        return BoltResponse(status=200, body="")
    except questions.NotTaken as refused:
        retry = int((request.headers.get("x-slack-retry-num") or ["0"])[0] or 0)
        if retry < LAST_RETRY:
            return BoltResponse(status=500, body=str(refused))
        _tell(client, fields["channel"], fields["thread"], str(refused))
        return BoltResponse(status=200, body="")
    return next()


def question_fields(event: dict, bot_user: str | None, *, shared: bool) -> dict | None:
    """A mention or a direct message as Question fields (its text cut to the limit); else None.

    A mention is answered in the thread it starts (or continues); bots (this one included) and
    edits or joins (message subtypes) ask nothing. Neither does a malformed event (no channel or
    ts, or fields that are not strings): it is acknowledged and ignored, as a retry would not help.
    """
    if not _well_formed(event):
        return None
    if event.get("type") == "app_mention":
        text, thread = (
            _without_mention(event.get("text", ""), bot_user),
            event.get("thread_ts") or event["ts"],
        )
    elif event.get("type") == "message" and event.get("channel_type") == "im":
        if event.get("subtype") or event.get("bot_id"):
            return None
        text, thread = event.get("text", "").strip(), event.get("thread_ts", "")
    else:
        return None
    text, note = clean_question(text, settings.QUESTION_MAX_CHARS)
    return {**_origin(event), "text": text, "note": note, "thread": thread, "shared": shared}


def on_mention(event, context, client):
    """A mention in a channel, already written down: the placeholder, or a hint if it asked nothing."""
    _acknowledged(event, context, client)


def on_message(event, context, client):
    """Direct messages; bots (this one included) and edits or joins (subtypes) are ignored."""
    if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
        return
    _acknowledged(event, context, client)


def _acknowledged(event: dict, context: BoltContext, client: WebClient) -> None:
    """After the acknowledgement: the written-down question's placeholder; a hint for a mention
    that asked nothing (no question is written down for it)."""
    question: Question | None = context.get("question")
    if question is not None:
        ensure_placeholder(client, question)
        return
    fields = question_fields(event, context.bot_user_id, shared=False)
    if fields is not None and not fields["text"]:
        client.chat_postMessage(
            channel=fields["channel"], thread_ts=fields["thread"] or None, text=blocks.HINT
        )


def on_ask(ack, command, client, respond):
    """/ask: taken before the acknowledgement (Slack does not retry commands, so a failure is said
    in the acknowledgement); the reply starts a thread of its own."""
    text, note = clean_question(command.get("text", ""), settings.QUESTION_MAX_CHARS)
    if not text:
        ack("Ask a question after the command, e.g. `/ask How do I get VPN access?`")
        return
    user = command["user_id"]
    try:
        question = questions.take(
            PLATFORM,
            f"command:{command.get('trigger_id') or command.get('api_app_id', '')}",
            channel=command["channel_id"],
            user=user,
            workspace=command.get("team_id", ""),
            text=text,
            note=note,
            starts_thread=True,
            asked=f"<@{user}> asked: {blocks.escape(clean_question(text, 500)[0])}",
            shared=bool(command.get("is_ext_shared_channel")),
        )
    except ChannelDisabled:
        ack()
        respond("I'm switched off in this channel; an admin can turn me on in the console.")
        return
    except questions.NotTaken as refused:
        ack(str(refused))
        return
    ack()
    if question is None:
        return
    try:
        ensure_placeholder(client, question)
    except SlackApiError as error:
        logger.warning("/ask in %s: cannot post (%s)", question.channel, error.response.get("error"))
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
    reaction, item, voter = event.get("reaction"), event.get("item"), event.get("user", "")
    value = (
        REACTION_VOTES.get(reaction.split("::")[0]) if isinstance(reaction, str) else None
    )  # "+1::skin-tone-2"
    if value is None or not isinstance(item, dict) or item.get("type") != "message":
        return None
    if voter == context.bot_user_id:
        return None
    if event.get("item_user") not in (None, context.bot_user_id):
        return None
    reply = answer_for_message(PLATFORM, item.get("channel", ""), item.get("ts", ""))
    return (reply.pk, voter, value) if reply is not None else None


# --- answering ------------------------------------------------------------------------------


def _well_formed(event: dict) -> bool:
    """Channel and ts are strings, and so are text, thread_ts, user and team where present."""
    required = (event.get("channel"), event.get("ts"))
    optional = (event.get(key) or "" for key in ("text", "thread_ts", "user", "team"))
    return all(isinstance(value, str) and value for value in required) and all(
        isinstance(value, str) for value in optional
    )


def _without_mention(text: str, bot_user: str | None) -> str:
    """The question without the bot's own <@U…> mention; other people's mentions stay."""
    who = re.escape(bot_user) if bot_user else "[A-Z0-9]+"
    return re.sub(rf"<@{who}(?:\|[^>]*)?>", "", text).strip()


def _origin(event: dict) -> dict:
    return {"channel": event["channel"], "user": event.get("user", ""), "workspace": event.get("team", "")}


def _tell(client: WebClient, channel: str, thread: str, text: str) -> None:
    try:
        client.chat_postMessage(channel=channel, thread_ts=thread or None, text=text)
    except Exception:
        logger.exception("slack %s: could not tell the asker %r", channel, text)


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
