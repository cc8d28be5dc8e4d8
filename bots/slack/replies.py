"""Slack's side of a written-down question: the "Thinking…" placeholder, then the answer in its place.

The bolt listener posts the placeholder right after the acknowledgement; the answer worker posts
it if the listener had not yet (`ensure_placeholder` lets exactly one of them win), then replaces
it with the answer through the Web API (SLACK_API_URL). No SQL and no model calls here.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler, default_retry_handlers

from bots.slack import blocks
from console.conversations.models import Answer, Question
from console.conversations.threads import attach_message

logger = logging.getLogger(__name__)


def web_client() -> WebClient:
    """The bot's Web API client: SLACK_API_URL, and a 429 is retried after Slack's Retry-After."""
    handlers = [*default_retry_handlers(), RateLimitErrorRetryHandler(max_retry_count=3)]
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, retry_handlers=handlers)


def ensure_placeholder(client: WebClient, question: Question) -> str:
    """The question's "Thinking…" message, posted now unless it exists; its ts.

    The listener and the worker may both get here: each posts, one wins the row, and the loser
    deletes its own message again.
    """
    if question.placeholder:
        return question.placeholder
    text = f"{question.asked}\n{blocks.THINKING}" if question.asked else blocks.THINKING
    posted = client.chat_postMessage(channel=question.channel, thread_ts=question.thread or None, text=text)
    winner = question.claim_placeholder(posted["ts"])
    if winner != posted["ts"]:
        client.chat_delete(channel=question.channel, ts=posted["ts"])
    return winner


class SlackReplies:
    """The `Replier` for Slack (console.conversations.questions)."""

    def __init__(self, client: WebClient | None = None) -> None:
        self.client = client or web_client()

    def prepare(self, question: Question) -> None:
        ensure_placeholder(self.client, question)
        question.shared = is_shared_channel(self.client, question.channel, hint=question.shared)

    def deliver(self, question: Question, answer: Answer) -> None:
        """Replace the placeholder with the answer (more messages in the thread if it is long)."""
        attach_message(answer, question.placeholder)
        messages = blocks.answer_messages(
            answer.pk, answer.text, answer.sources, asked=question.asked, note=question.note
        )
        self.client.chat_update(channel=question.channel, ts=question.placeholder, **messages[0])
        thread = question.placeholder if question.starts_thread else question.thread
        for more in messages[1:]:
            self.client.chat_postMessage(channel=question.channel, thread_ts=thread or None, **more)
        logger.info("slack %s: answer %s posted as %s", question.channel, answer.pk, question.placeholder)

    def withdraw(self, question: Question) -> None:
        if question.placeholder:
            self.client.chat_delete(channel=question.channel, ts=question.placeholder)

    def apologise(self, question: Question, text: str) -> None:
        if question.placeholder:
            self.client.chat_update(channel=question.channel, ts=question.placeholder, text=text)
        else:
            self.client.chat_postMessage(
                channel=question.channel, thread_ts=question.thread or None, text=text
            )


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
