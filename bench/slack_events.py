"""Slack's side of /slack/events for bench/faults.py: signed events, delivered as Slack delivers them.

Slack signs every request (`v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}` under the app's signing
secret), waits 3 seconds for a 2xx, and otherwise delivers the event again up to three times (nearly
at once, after a minute, after five minutes) with `X-Slack-Retry-Num` and `X-Slack-Retry-Reason`
(docs.slack.dev, "Using the Events API": "Error handling").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.bots.slack_fake import BOT_USER, TEAM

DEADLINE = 3.0  # seconds Slack waits for the acknowledgement
RETRY_DELAYS = (0.0, 60.0, 300.0)  # before retry 1, 2 and 3


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature of `body` sent at `timestamp` (Unix seconds, as text)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    *,
    timestamp: str | None = None,
    content_type: str = "application/json",
    retry: int = 0,
    reason: str = "",
) -> dict[str, str]:
    """The headers Slack sends with `body`; a retry carries its number and reason."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret, timestamp, body),
    }
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason or "http_error"}
    return headers


def event_body(event: dict, event_id: str, *, shared: bool = False) -> bytes:
    """An Events API envelope around `event`, as Slack posts it to the request URL."""
    envelope = {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "A0BENCH",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        "is_ext_shared_channel": shared,
    }
    return json.dumps(envelope).encode()


def mention_event(channel: str, text: str, ts: str, *, user: str = "U0BENCH") -> dict:
    """An app_mention of the bot in `channel`, posted at `ts`."""
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "event_ts": ts,
        "channel": channel,
        "team": TEAM,
    }


@dataclass
class Attempt:
    """One delivery of an event: `status` None when no response came (refused, reset, timed out)."""

    retry: int
    status: int | None
    seconds: float
    error: str = ""

    @property
    def acked(self) -> bool:
        """Slack counts it delivered: a 2xx within its deadline."""
        return self.status is not None and 200 <= self.status < 300 and self.seconds <= DEADLINE

    @property
    def reason(self) -> str:
        """Slack's X-Slack-Retry-Reason for the retry this attempt causes."""
        if self.status is None:
            return "http_timeout" if self.error == "timeout" else "connection_failed"
        return "http_timeout" if self.seconds > DEADLINE else "http_error"


@dataclass
class Delivery:
    """An event and every attempt Slack made to deliver it."""

    event_id: str
    channel: str
    ts: str
    body: bytes = field(repr=False, default=b"")
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return any(attempt.acked for attempt in self.attempts)


class Slack:
    """Posts signed events to a /slack/events URL, retrying each as Slack does."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self.secret, self.retry_delays, self.sleep = url, secret, retry_delays, sleep
        self._ts = int(time.time())
        self._events = 0

    def next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000100"

    def next_event_id(self) -> str:
        self._events += 1
        return f"EvBENCH{self._events:06d}{int(time.time())}"

    def post(self, body: bytes, headers: dict[str, str], *, timeout: float = DEADLINE) -> Attempt:
        """One request; a response later than `timeout` counts as none (Slack has hung up)."""
        started = time.monotonic()
        try:
            response = requests.post(self.url, data=body, headers=headers, timeout=(timeout, timeout))
        except requests.Timeout:
            return Attempt(0, None, time.monotonic() - started, "timeout")
        except requests.ConnectionError as error:
            return Attempt(0, None, time.monotonic() - started, type(error).__name__)
        return Attempt(0, response.status_code, time.monotonic() - started)

    def deliver(self, delivery: Delivery) -> Delivery:
        """Deliver until acknowledged or Slack's retries are spent; the attempts go on `delivery`."""
        for retry in range(len(self.retry_delays) + 1):
            if retry:
                self.sleep(self.retry_delays[retry - 1])
            previous = delivery.attempts[-1] if delivery.attempts else None
            reason = previous.reason if previous else ""
            attempt = self.post(
                delivery.body, signed_headers(self.secret, delivery.body, retry=retry, reason=reason)
            )
            attempt.retry = retry
            delivery.attempts.append(attempt)
            if attempt.acked:
                break
        return delivery

    def mention(self, channel: str, text: str, *, shared: bool = False) -> Delivery:
        """A new mention of the bot in `channel` (not sent yet: `deliver` it)."""
        ts, event_id = self.next_ts(), self.next_event_id()
        body = event_body(mention_event(channel, text, ts), event_id, shared=shared)
        return Delivery(event_id, channel, ts, body)
