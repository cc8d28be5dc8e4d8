"""Discord's side of a written-down question: an answer worker replies over Discord's REST API.

The gateway (bots/discord/bot.py) only writes questions down and queues them; the answer worker
replies here, over plain HTTP (DISCORD_API_URL, `Authorization: Bot <token>`), so restarting the
gateway loses no question. Two kinds of question:

- `/ask`: the gateway deferred the interaction, so Discord shows "answerbot is thinking…". The
  answer replaces that response through the interaction webhook (PATCH …/messages/@original, then
  POST for further pieces). Its token lives 15 minutes; after that, or when Discord refuses it,
  the answer goes to the channel as a plain message that quotes the question (`Question.asked`).
- A message (mention, DM, `!ask`): the answer is a reply to it (`Question.reply_to`). No
  "Thinking…" message: the gateway and then the worker start the typing indicator, which Discord
  shows for about ten seconds or until the bot posts. The simpler design: nothing to edit, nothing
  to delete when the channel is switched off meanwhile, nothing left behind by a dead worker.

The last piece carries the 👍/👎 buttons (custom ids the gateway's VoteButton handles) and is
attached to the answer, so reactions find it. A 429 is waited out (Retry-After), a 5xx or a
network error is tried again a few times; anything else raises DiscordError, which the answer
job turns into an apology. No SQL and no model calls here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from bots.discord.format import answer_messages, split_message, vote_components
from console.conversations.models import Answer, Question
from console.conversations.threads import attach_message

logger = logging.getLogger(__name__)

SUPPRESS_EMBEDS = 1 << 2  # message flag: no link previews under an answer
NO_PINGS: dict[str, Any] = {"parse": []}
REQUEST_TIMEOUT = 10.0
SERVER_RETRY_DELAYS = (0.5, 1.0)  # after a 5xx or a network error; then DiscordError
RATE_LIMIT_RETRIES = 5
MAX_RATE_LIMIT_WAIT = 60.0  # a longer Retry-After fails the request rather than hold the worker
# Discord accepts an interaction's token for 15 minutes; keep a minute for the answer's pieces.
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=14)
TOKEN_REFUSED = {401, 404}  # expired or unknown interaction token, deleted original response
ORIGINAL = "/webhooks/{application}/{token}/messages/@original"  # routes as logged: no token
FOLLOW_UP = "/webhooks/{application}/{token}"

# Given the line quoting the question ("" when the answer goes where the question was asked):
# the message contents, each within Discord's limit.
Render = Callable[[str], list[str]]


class DiscordError(Exception):
    """Discord refused a request (after rate-limit waits and retries); str() names the route."""

    def __init__(self, route: str, status: int, body: Any) -> None:
        self.status = status
        self.code = body.get("code") if isinstance(body, dict) else None
        detail = body.get("message") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"Discord {route}: HTTP {status} {detail or ''}".rstrip())


class DiscordAPI:
    """The few REST calls answers need. `route` names the request in logs and errors without the
    interaction token, which is a credential."""

    def __init__(self, base_url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.token = token
        self.client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            headers={"User-Agent": "DiscordBot (answerbot, 1.0)"},  # the form Discord asks for
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        webhook: bool = False,
    ) -> Any:
        """The response's JSON (None for an empty body). Webhook routes authenticate by their token
        in the path, so they carry no bot token."""
        headers = {} if webhook else {"Authorization": f"Bot {self.token}"}
        failures = rate_limits = 0
        while True:
            try:
                response = self.client.request(
                    method, path.lstrip("/"), json=json, params=params, headers=headers
                )
            except httpx.TransportError as error:
                failures += 1
                if failures > len(SERVER_RETRY_DELAYS):
                    raise DiscordError(route, 0, f"{type(error).__name__}: {error}") from error
                logger.warning("discord %s: %s; trying again", route, error)
                time.sleep(SERVER_RETRY_DELAYS[failures - 1])
                continue
            if response.status_code == 429 and rate_limits < RATE_LIMIT_RETRIES:
                wait = retry_after(response)
                if wait <= MAX_RATE_LIMIT_WAIT:
                    rate_limits += 1
                    logger.info("discord %s: rate limited, waiting %.2f s", route, wait)
                    time.sleep(wait)
                    continue
            if response.status_code >= 500 and failures < len(SERVER_RETRY_DELAYS):
                failures += 1
                logger.warning("discord %s: HTTP %s; trying again", route, response.status_code)
                time.sleep(SERVER_RETRY_DELAYS[failures - 1])
                continue
            if response.is_error:
                raise DiscordError(route, response.status_code, _body(response))
            return _body(response) if response.content else None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def retry_after(response: httpx.Response) -> float:
    """Seconds to wait after a 429: the body's `retry_after` (fractional), else the Retry-After
    header, else one second."""
    body = _body(response)
    said = body.get("retry_after") if isinstance(body, dict) else None
    for value in (said, response.headers.get("Retry-After")):
        try:
            return max(float(str(value)), 0.0)
        except ValueError:  # absent ("None") or not a number
            continue
    return 1.0


@lru_cache(maxsize=4)
def _api(base_url: str, token: str) -> DiscordAPI:
    return DiscordAPI(base_url, token)


def discord_api() -> DiscordAPI:
    """The REST client for DISCORD_API_URL and DISCORD_TOKEN, one per process (connections reused)."""
    return _api(settings.DISCORD_API_URL, settings.DISCORD_TOKEN)


def message_body(content: str, components: list[dict] | None = None) -> dict[str, Any]:
    """A message as answers are sent: no link previews, no pings; `components` replace any there."""
    return {
        "content": content,
        "flags": SUPPRESS_EMBEDS,
        "allowed_mentions": NO_PINGS,
        "components": components or [],
    }


class DiscordReplies:
    """The `Replier` for Discord (console.conversations.questions)."""

    def __init__(self, api: DiscordAPI | None = None) -> None:
        self.api = api or discord_api()

    def prepare(self, question: Question) -> None:
        """A message's asker sees the bot typing; an /ask already shows "thinking…"."""
        if question.interaction:
            return
        channel = target_channel(question)
        try:
            self.api.request("POST", f"channels/{channel}/typing", route=f"POST /channels/{channel}/typing")
        except DiscordError as error:  # cosmetic: the answer itself may still get through
            logger.warning("question %s: no typing indicator (%s)", question.pk, error)

    def deliver(self, question: Question, answer: Answer) -> None:
        """Post the answer in pieces, the last with the vote buttons, and attach that last message."""

        def render(asked: str) -> list[str]:
            return answer_messages(answer.text, answer.sources, note=question.note, asked=asked)

        message_id = self._send(question, render, vote_components(answer.pk))
        attach_message(answer, message_id)
        logger.info("discord %s: answer %s posted as %s", question.channel, answer.pk, message_id)

    def withdraw(self, question: Question) -> None:
        """The channel was switched off meanwhile: an /ask's "thinking…" response is deleted."""
        webhook = live_webhook(question)
        if webhook is None:
            return
        try:
            self.api.request(
                "DELETE", f"{webhook}/messages/@original", route=f"DELETE {ORIGINAL}", webhook=True
            )
        except DiscordError as error:
            if error.status not in TOKEN_REFUSED:
                raise

    def apologise(self, question: Question, text: str) -> None:
        """`text` in place of the answer: the /ask response edited, or a reply to the message."""

        def render(asked: str) -> list[str]:
            return split_message(f"{asked}\n\n{text}" if asked else text)

        self._send(question, render, None)

    def _send(self, question: Question, render: Render, components: list[dict] | None) -> str:
        """The pieces where the question's answer goes; the id of the last message."""
        webhook = live_webhook(question)
        if webhook is not None:
            sent = self._through_webhook(webhook, render(""), components)
            if sent is not None:
                return sent
            logger.warning(
                "question %s: the interaction token was refused; posting in the channel", question.pk
            )
        return self._in_channel(question, render(question.asked if question.interaction else ""), components)

    def _through_webhook(self, webhook: str, pieces: list[str], components: list[dict] | None) -> str | None:
        """The first piece replaces the deferred response, the rest follow it; None when Discord
        no longer takes the token (nothing was sent then)."""
        last = len(pieces) - 1
        try:
            sent = self.api.request(
                "PATCH",
                f"{webhook}/messages/@original",
                route=f"PATCH {ORIGINAL}",
                json=message_body(pieces[0], components if last == 0 else None),
                webhook=True,
            )
        except DiscordError as error:
            if error.status in TOKEN_REFUSED:
                return None
            raise
        for number, piece in enumerate(pieces[1:], 1):
            sent = self.api.request(
                "POST",
                webhook,
                route=f"POST {FOLLOW_UP}",
                json=message_body(piece, components if number == last else None),
                params={"wait": "true"},  # answer with the message, whose id is attached
                webhook=True,
            )
        return str(sent["id"])

    def _in_channel(self, question: Question, pieces: list[str], components: list[dict] | None) -> str:
        """The first piece replies to the question's message (if it was one), the rest follow it."""
        channel = target_channel(question)
        last = len(pieces) - 1
        sent: dict[str, Any] = {}
        for number, piece in enumerate(pieces):
            body = message_body(piece, components if number == last else None)
            if number == 0 and question.reply_to:
                # A reply without a ping; a question deleted meanwhile still gets its answer.
                body["message_reference"] = {"message_id": question.reply_to, "fail_if_not_exists": False}
                body["allowed_mentions"] = {**NO_PINGS, "replied_user": False}
            sent = self.api.request(
                "POST", f"channels/{channel}/messages", route=f"POST /channels/{channel}/messages", json=body
            )
        return str(sent["id"])


def target_channel(question: Question) -> str:
    """Where the answer is posted: the Discord thread if it was asked in one (a thread is a
    channel of its own), else the channel or DM."""
    return question.thread or question.channel


def live_webhook(question: Question) -> str | None:
    """`webhooks/{application id}/{token}` of a deferred /ask whose token Discord still accepts."""
    application, _, token = question.interaction.partition(":")
    if not (application and token):
        return None
    if timezone.now() - question.created_at > INTERACTION_TOKEN_LIFETIME:
        return None
    return f"webhooks/{application}/{token}"
