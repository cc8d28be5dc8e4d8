"""A local stand-in for Slack's Web API, the way slack-bolt tests itself (tests/mock_web_api_server).

A real HTTP server on 127.0.0.1 (its own thread) answers the methods the bot calls with the JSON
Slack sends, records every call, and can answer a method with 429 + Retry-After once. Slash command
`response_url`s point here too (any path outside /api/ is recorded as "response_url").

It also holds channels with messages and threads (`post`), answering conversations.list,
conversations.history and conversations.replies a few results per page with Slack's cursors, and
users.info with profiles, for the Slack-channel knowledge source.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

TEAM = "T0TEST"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"


@dataclass
class Call:
    method: str
    args: dict
    headers: dict
    response: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.bots: set[str] = set()
        self.shared_channels: set[str] = set()  # conversations.info says is_ext_shared for these
        self._rate_limited: dict[str, int] = {}
        self.token: str | None = None  # when set, calls with another bearer token get invalid_auth
        self.errors: dict[str, str] = {}  # method -> Slack error code it answers with
        self.channels: dict[str, str] = {}  # id -> name
        self.messages: dict[str, list[dict]] = {}  # channel id -> every message, oldest first
        self.people: dict[str, str] = {}  # user id -> display name (users.info profile)
        self.page_size = 2  # results per page of the paginated methods, whatever `limit` asks
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/"

    @property
    def response_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/commands/respond"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rate_limit_once(self, method: str, retry_after: int = 1) -> None:
        """The next call to `method` gets HTTP 429 with Retry-After."""
        self._rate_limited[method] = retry_after

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, *, timeout: float = 20.0, where=None) -> list[Call]:
        """The calls to `method` (matching `where`) once there are `count`; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_to(method) if where is None or where(c)]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} {method} calls after {timeout}s"
                return found
            time.sleep(0.02)

    def post(self, channel: str, user: str, text: str, *, thread_ts: str = "", **fields) -> dict:
        """A message in `channel` (created if new), in the thread of `thread_ts` if given."""
        self.channels.setdefault(channel, channel.lower())
        message = {"type": "message", "user": user, "text": text, "ts": f"1700000000.{next(self._ts):06d}"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        message.update(fields)
        self.messages.setdefault(channel, []).append(message)
        return message

    def react(self, channel: str, ts: str, name: str, *users: str) -> None:
        message = next(m for m in self.messages[channel] if m["ts"] == ts)
        reactions = message.setdefault("reactions", [])
        found = next((r for r in reactions if r["name"] == name), None)
        if found is None:
            found = {"name": name, "users": [], "count": 0}
            reactions.append(found)
        found["users"] += list(users)
        found["count"] = len(found["users"])

    def delete(self, channel: str, ts: str) -> None:
        self.messages[channel] = [m for m in self.messages[channel] if m["ts"] != ts]

    def _page(self, results: list, args: dict, key: str) -> dict:
        start = int(args.get("cursor") or 0)
        end = start + min(int(args.get("limit") or 100), self.page_size)
        more = end < len(results)
        return {
            "ok": True,
            key: results[start:end],
            "has_more": more,
            "response_metadata": {"next_cursor": str(end) if more else ""},
        }

    def _history(self, channel: str) -> list[dict]:
        """Top-level messages, newest first, threads summarised the way conversations.history does."""
        messages = self.messages.get(channel, [])
        top = []
        for message in messages:
            if message.get("thread_ts", message["ts"]) != message["ts"]:
                continue
            shown = dict(message)
            replies = [m for m in messages if m.get("thread_ts") == message["ts"] and m is not message]
            if replies:
                shown.update(
                    thread_ts=message["ts"],
                    reply_count=len(replies),
                    reply_users=sorted({m.get("user", "") for m in replies}),
                    reply_users_count=len({m.get("user", "") for m in replies}),
                    latest_reply=replies[-1]["ts"],
                )
            top.append(shown)
        return top[::-1]

    # --- the Web API --------------------------------------------------------------------------

    def _reply(self, method: str, args: dict) -> dict:
        ts = f"1700000000.{next(self._ts):06d}"
        channel = args.get("channel", "")
        if method in self.errors:
            return {"ok": False, "error": self.errors[method]}
        if method == "conversations.list":
            channels = [{"id": c, "name": n, "is_channel": True} for c, n in self.channels.items()]
            return self._page(channels, args, "channels")
        if method == "conversations.history":
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            return self._page(self._history(channel), args, "messages")
        if method == "conversations.replies":
            thread = [
                m for m in self.messages.get(channel, []) if args.get("ts") in (m["ts"], m.get("thread_ts"))
            ]
            if not thread or thread[0]["ts"] != args.get("ts"):
                return {"ok": False, "error": "thread_not_found"}
            return self._page(thread, args, "messages")
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://test.slack.com/",
                "team": "Test",
                "user": "answerbot",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            message = {
                "type": "message",
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": args.get("text", ""),
                "ts": ts,
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text", "")}
        if method == "chat.delete":
            return {"ok": True, "channel": channel, "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "reactions.add":
            return {"ok": True}
        if method == "views.open":
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", **(view or {})}}
        if method == "conversations.info":
            shared = channel in self.shared_channels
            return {
                "ok": True,
                "channel": {
                    "id": channel,
                    "is_channel": True,
                    "is_shared": shared,
                    "is_ext_shared": shared,
                    "is_org_shared": False,
                    "is_pending_ext_shared": False,
                },
            }
        if method == "users.info":
            user = args.get("user", "")
            found = {"id": user, "team_id": TEAM, "is_bot": user in self.bots}
            if user in self.people:
                name = self.people[user]
                found.update(
                    name=name.lower(), real_name=name, profile={"display_name": name, "real_name": name}
                )
            return {"ok": True, "user": found}
        return {"ok": False, "error": "unknown_method"}

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or "{}")
                else:
                    args = dict(parse_qsl(raw))
                path = self.path.split("?")[0]
                method = path.removeprefix("/api/") if path.startswith("/api/") else "response_url"
                with fake._lock:
                    retry_after = fake._rate_limited.pop(method, None)
                    token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    if retry_after is not None:
                        status, reply = 429, {"ok": False, "error": "ratelimited"}
                    elif fake.token is not None and method != "response_url" and token != fake.token:
                        status, reply = 200, {"ok": False, "error": "invalid_auth"}
                    elif method == "response_url":
                        status, reply = 200, {"ok": True}
                    else:
                        status, reply = 200, fake._reply(method, args)
                    fake.calls.append(Call(method, args, dict(self.headers), reply))
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                self._send(status, reply, headers)

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
