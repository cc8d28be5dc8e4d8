"""A local stand-in for Discord's REST API, as tests/bots/slack_fake.py is for Slack's Web API.

A real HTTP server on 127.0.0.1 (its own thread) answers with Discord's JSON shapes and records
every call. Both sides of the bot talk to it: the gateway's discord.py client (`Route.BASE`
pointed here: login, command sync, interaction callbacks) and the answer worker's plain HTTP
client (DISCORD_API_URL: edits of the deferred response, follow-ups, channel messages, typing).

Faults are queued per route: `fail` answers the next calls with an error status, `rate_limit`
with a 429 and Discord's `retry_after`; `expired_tokens` makes an interaction's webhook refuse
its token as Discord does after 15 minutes.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

GUILD_ID, CHANNEL_ID, USER_ID, OTHER_USER_ID = (
    900000000000000001,
    900000000000000002,
    900000000000000003,
    900000000000000004,
)
APP_ID, BOT_ID = 910000000000000001, 910000000000000002
TOKEN = "test-token"
API_PREFIX = "/api/v10"


@dataclass
class Call:
    method: str
    path: str  # after /api/v10
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    status: int = 200
    response: Any = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict
    headers: dict[str, str]
    times: int


class FakeDiscord:
    """Discord's REST API on localhost: records every call, keeps the messages it was sent."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, dict] = {}
        self.originals: dict[str, str] = {}  # interaction token -> its response's message id
        self.expired_tokens: set[str] = set()
        self.reject_token = False
        self._faults: list[Fault] = []
        self._ids = itertools.count(920000000000000001)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{API_PREFIX}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snowflake(self) -> str:
        return str(next(self._ids))

    # --- faults and what was called ---------------------------------------------------------------

    def fail(self, method: str, path: str, status: int = 503, *, times: int = 1) -> None:
        """The next `times` calls of `method` to a path matching `path` (a regex) get `status`."""
        body = {"message": f"{status}: Service Unavailable", "code": 0}
        self._faults.append(Fault(method, re.compile(path), status, body, {}, times))

    def rate_limit(self, method: str, path: str, retry_after: float, *, times: int = 1) -> None:
        """The next `times` calls get a 429 as Discord sends it: `retry_after` in the body (fractional
        seconds) and the Retry-After header (whole seconds, rounded up)."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        headers = {"Retry-After": str(int(-(-retry_after // 1))), "X-RateLimit-Scope": "user"}
        self._faults.append(Fault(method, re.compile(path), 429, body, headers, times))

    def calls_to(self, method: str, path: str) -> list[Call]:
        """Calls of `method` to paths matching the regex `path` (whole path), oldest first."""
        pattern = re.compile(path)
        with self._lock:
            return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    def interaction_calls(self, token: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if token in c.path]

    def wait_for(self, method: str, path: str, count: int = 1, *, timeout: float = 30.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.calls_to(method, path)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} {method} {path} after {timeout}s"
                return found
            time.sleep(0.02)

    # --- payloads ---------------------------------------------------------------------------------

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

    def message(self, body: dict, message_id: str | None = None, channel_id: str | None = None) -> dict:
        """A message the bot sent (or edited, keeping `message_id`), stored and returned as Discord does."""
        message_id = message_id or self.snowflake()
        previous = self.messages.get(message_id, {})
        message = {
            "id": message_id,
            "channel_id": channel_id or previous.get("channel_id") or str(CHANNEL_ID),
            "author": self.user(BOT_ID, "answerbot", bot=True),
            "content": body.get("content", previous.get("content", "")),
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 19 if body.get("message_reference") else 0,
            "flags": body.get("flags", previous.get("flags", 0)) or 0,
            "components": body.get("components", previous.get("components", [])) or [],
            "application_id": str(APP_ID),
        }
        if body.get("message_reference"):
            message["message_reference"] = {"channel_id": message["channel_id"], **body["message_reference"]}
        self.messages[message_id] = message
        return message

    def deferred(self, token: str) -> str:
        """The "thinking…" response a gateway's defer leaves for interaction `token`; its id."""
        with self._lock:
            message = self.message({"flags": 128})  # LOADING
            self.originals[token] = message["id"]
        return message["id"]

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

    # --- the REST API -----------------------------------------------------------------------------

    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.path.fullmatch(path) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _authorised(self, path: str, headers: dict[str, str]) -> bool:
        """Bot routes need `Authorization: Bot <token>`; webhook and interaction routes carry theirs."""
        if path.startswith(("/webhooks/", "/interactions/")):
            return True
        return headers.get("Authorization") == f"Bot {TOKEN}"

    def _reply(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        route = f"{method} {path}"
        if route == "GET /users/@me":
            if self.reject_token:
                return 401, {"message": "401: Unauthorized", "code": 0}
            return 200, self.user(BOT_ID, "answerbot", bot=True)
        if route == "GET /oauth2/applications/@me":
            return 200, {
                "id": str(APP_ID),
                "name": "answerbot",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": self.user(USER_ID, "owner"),
            }
        if re.fullmatch(rf"PUT /applications/{APP_ID}/commands", route):
            return 200, [
                {**c, "id": self.snowflake(), "application_id": str(APP_ID), "version": "1"} for c in body
            ]
        if match := re.fullmatch(r"POST /interactions/(\d+)/([\w.-]+)/callback", route):
            message = self.message(body.get("data") or {})
            self.originals[match[2]] = message["id"]
            return 200, {
                "interaction": {
                    "id": match[1],
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": body["type"] == 5,
                    "response_message_ephemeral": bool((body.get("data") or {}).get("flags", 0) & 64),
                },
                "resource": {"type": body["type"], "message": message},
            }
        if match := re.fullmatch(
            rf"(PATCH|DELETE|POST) /webhooks/{APP_ID}/([\w.-]+)(/messages/@original)?", route
        ):
            token, original = match[2], bool(match[3])
            if token in self.expired_tokens:
                return 401, {"message": "Invalid Webhook Token", "code": 50027}
            if not original:
                return (200, self.message(body)) if method == "POST" else (405, {"message": "405", "code": 0})
            if token not in self.originals:
                return 404, {"message": "Unknown Message", "code": 10008}
            if method == "DELETE":
                self.messages.pop(self.originals.pop(token), None)
                return 204, None
            return 200, self.message(body, self.originals[token])
        if match := re.fullmatch(r"POST /channels/(\d+)/messages", route):
            return 200, self.message(body, channel_id=match[1])
        if re.fullmatch(r"POST /channels/\d+/typing", route):
            return 204, None
        return 404, {"message": f"Unknown Route {route}", "code": 0}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def handle_one(self) -> None:
                url = urlsplit(self.path)
                path = url.path.removeprefix(API_PREFIX)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = dict(self.headers)
                with fake._lock:
                    fault = fake._fault(self.command, path)
                    if fault is not None:
                        status, reply, extra = fault.status, fault.body, fault.headers
                    elif not fake._authorised(path, headers):
                        status, reply, extra = 401, {"message": "401: Unauthorized", "code": 0}, {}
                    else:
                        (status, reply), extra = fake._reply(self.command, path, body), {}
                    query = dict(parse_qsl(url.query))
                    fake.calls.append(Call(self.command, path, query, body, headers, status, reply))
                self._send(status, reply, extra)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    # discord.py decodes a body only when Content-Type is exactly application/json
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
