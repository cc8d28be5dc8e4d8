"""Slack channels: each answered thread in chosen channels becomes a document (slack_sdk WebClient).

Listing reads each channel's history (conversations.history, paged with cursors) and keeps the
threads people replied to; fetching reads one thread (conversations.replies) and writes it as
Markdown: the question, each answer and who gave it, and the thread's permalink. An answer that
carries the accept reaction (✅ unless configured) from an allowed person, not its own author, also
nominates a candidate training pair, which a curator still approves.

Slack's listing says when a thread got a reply, not when someone reacted in it, and an answer is
usually accepted after the last reply: threads active in the last RECHECK_DAYS days therefore carry
the hour in their version, so each sync re-reads them (its content, unchanged, is not re-indexed).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.error import URLError

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler, default_retry_handlers

from console.conversations.pseudonyms import hash_id
from console.knowledge.sources.base import (
    Candidate,
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
    register,
)
from console.knowledge.sources.hosted import check_env_name, comma_list, network_reason, scrub

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
RECHECK_DAYS = 3
TITLE_CHARS = 100
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{6,}")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")
_REACTION = re.compile(r"[a-z0-9_+'-]+")
# Messages people wrote; joins, leaves, topic changes and tombstones are not answers.
_KEPT_SUBTYPES = {None, "", "thread_broadcast", "file_share", "me_message"}
_REFUSED_TOKEN = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}


@register
class SlackConnector(Connector):
    """Answered threads of `channels` (ids or names), with the bot's token or `$token_env`'s."""

    kind = "slack"
    option_names = ("channels", "accept_reaction", "accepted_by", "days", "token_env")
    required = ("channels",)

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        channels = [c.removeprefix("#") for c in comma_list(cleaned["channels"])]
        bad = [c for c in channels if not (_CHANNEL_ID.fullmatch(c) or _CHANNEL_NAME.fullmatch(c))]
        if not channels or bad:
            raise OptionsError(
                "The slack option 'channels' takes channel ids (C0123ABCD) or names (#help-it) separated by "
                f"commas, not {str(bad[0] if bad else cleaned['channels'])[:80]!r}."
            )
        cleaned["channels"] = ",".join(channels)
        reaction = str(cleaned.get("accept_reaction") or "white_check_mark").strip().strip(":")
        if not _REACTION.fullmatch(reaction):
            raise OptionsError(
                "The slack option 'accept_reaction' is a reaction's name as Slack spells it, e.g. "
                f"white_check_mark (✅), not {reaction[:40]!r}."
            )
        cleaned["accept_reaction"] = reaction
        people = comma_list(cleaned.get("accepted_by") or "")
        strangers = [p for p in people if not _USER_ID.fullmatch(p)]
        if strangers:
            raise OptionsError(
                "The slack option 'accepted_by' takes member ids (U0123ABCD, from a profile's ⋯ menu: "
                f"Copy member ID) separated by commas, not {strangers[0][:40]!r}."
            )
        cleaned["accepted_by"] = ",".join(people)
        days = str(cleaned.get("days") or "").strip()
        if days and (not days.isdigit() or int(days) < 1):
            raise OptionsError(f"The slack option 'days' is a whole number of days (e.g. 365), not {days!r}.")
        cleaned["days"] = days
        cleaned["token_env"] = check_env_name(cls.kind, "token_env", cleaned.get("token_env"))
        return cleaned

    def __init__(self, options: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> None:
        super().__init__(options, secrets)
        self._names: dict[str, str] = {}
        self._workspace = ""
        self._bot_user = ""

    # --- listing and fetching ---------------------------------------------------------------

    def items(self) -> Iterator[Item]:
        client = self._client()
        self._who_am_i(client, fail=self._listing_failed)
        channels = self._channel_ids(client)
        oldest = str(time.time() - int(self.options["days"]) * 86400) if self.options.get("days") else "0"
        for name, channel in channels.items():
            pages = self._pages(
                client.conversations_history,
                f"reading the history of #{name}",
                channel=channel,
                oldest=oldest,
            )
            for page in pages:
                for message in page.get("messages") or []:
                    if self._is_answered_thread(message):
                        yield Item(
                            key=f"{channel}/{message['ts']}",
                            version=_thread_version(message),
                            title=_title(clean_text(str(message.get("text") or ""), lambda user: "someone")),
                            url=self._permalink(channel, str(message["ts"])),
                        )

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        channel, _, ts = item.key.partition("/")
        try:
            client = self._client()
        except SourceError as err:
            raise ItemError(str(err)) from None
        if not self._workspace:
            self._who_am_i(client, fail=self._item_failed)
        messages: list[Mapping[str, Any]] = []
        for page in self._pages(
            client.conversations_replies, "reading the thread", fail=self._item_failed, channel=channel, ts=ts
        ):
            messages.extend(page.get("messages") or [])
        if not messages or messages[0].get("ts") != ts:
            raise ItemError("Slack did not send this thread's question: it may have been deleted.")
        question, answers = messages[0], [m for m in messages[1:] if self._by_a_person(m)]
        names = self._namer(client)
        document = self._markdown(question, answers, names, item.url or self._permalink(channel, ts))
        candidates = tuple(
            Candidate(
                question=clean_text(str(question.get("text") or ""), names), answer=clean_text(text, names)
            )
            for answer in answers
            if self._accepted(answer) and (text := str(answer.get("text") or "").strip())
        )
        title = _title(clean_text(str(question.get("text") or ""), names))
        return Content(filename="thread.md", data=document.encode(), title=title, candidates=candidates)

    # --- what counts --------------------------------------------------------------------------

    def _is_answered_thread(self, message: Mapping[str, Any]) -> bool:
        if message.get("thread_ts") != message.get("ts") or not message.get("reply_count"):
            return False
        if message.get("subtype") not in _KEPT_SUBTYPES and message.get("subtype") != "bot_message":
            return False
        repliers = set(message.get("reply_users") or []) - {self._bot_user}
        return bool(repliers) or not message.get("reply_users")

    def _by_a_person(self, message: Mapping[str, Any]) -> bool:
        """Replies written by people: not this bot's own answers, not other bots', not join notices."""
        if message.get("bot_id") or message.get("subtype") not in _KEPT_SUBTYPES:
            return False
        return bool(message.get("user")) and message.get("user") != self._bot_user

    def _accepted(self, answer: Mapping[str, Any]) -> bool:
        allowed = set(comma_list(self.options.get("accepted_by") or ""))
        wanted = self.options.get("accept_reaction") or "white_check_mark"
        for reaction in answer.get("reactions") or []:
            if str(reaction.get("name") or "").split("::")[0] != wanted:  # "+1::skin-tone-2"
                continue
            voters = set(reaction.get("users") or []) - {answer.get("user")}
            if voters & allowed if allowed else voters:
                return True
        return False

    # --- the document -------------------------------------------------------------------------

    def _markdown(
        self,
        question: Mapping[str, Any],
        answers: list[Mapping[str, Any]],
        names: Callable[[str], str],
        permalink: str,
    ) -> str:
        asked = clean_text(str(question.get("text") or ""), names)
        title = _title(asked)
        asker = names(str(question.get("user") or "")) if question.get("user") else "someone"
        lines = [
            f"# {title}",
            "",
            f"Asked by {asker} on {_day(question.get('ts'))}:",
            "",
            _quoted(asked),
            "",
        ]
        for answer in answers:
            mark = " (accepted ✅)" if self._accepted(answer) else ""
            lines += [
                f"## Answer by {names(str(answer['user']))}{mark}",
                "",
                clean_text(str(answer.get("text") or ""), names),
                "",
            ]
        lines.append(f"Thread: {permalink}")
        return "\n".join(lines) + "\n"

    def _namer(self, client: WebClient) -> Callable[[str], str]:
        """user id -> display name (users.info, remembered); a pseudonym when Slack won't say."""

        def name(user: str) -> str:
            if user not in self._names:
                self._names[user] = self._look_up(client, user)
            return self._names[user]

        return name

    def _look_up(self, client: WebClient, user: str) -> str:
        try:
            found = client.users_info(user=user)["user"]
        except (SlackApiError, URLError, OSError) as err:
            reason = err.response.get("error") if isinstance(err, SlackApiError) else network_reason(err)
            logger.warning("users.info failed for a Slack user (%s); the source shows a pseudonym", reason)
            return "user-" + hash_id("slack", user)[:8]
        profile = found.get("profile") or {}
        return str(
            profile.get("display_name")
            or profile.get("real_name")
            or found.get("real_name")
            or found.get("name")
            or "user-" + hash_id("slack", user)[:8]
        )

    def _permalink(self, channel: str, ts: str) -> str:
        return f"{self._workspace.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"

    # --- the client, channels and errors ------------------------------------------------------

    def _client(self) -> WebClient:
        env_name = self.options.get("token_env") or ""
        token = (self.secrets.get(env_name) if env_name else settings.SLACK_BOT_TOKEN) or ""
        if not token.strip():
            variable = f"${env_name}" if env_name else "$SLACK_BOT_TOKEN"
            raise SourceError(
                f"No Slack token: the environment variable {variable} is not set (or empty) in the process "
                "that syncs. Set it for the web and worker processes and sync again."
            )
        handlers = [*default_retry_handlers(), RateLimitErrorRetryHandler(max_retry_count=3)]
        return WebClient(token=token.strip(), base_url=settings.SLACK_API_URL, retry_handlers=handlers)

    def _who_am_i(self, client: WebClient, *, fail: Callable[[Exception, str], NoReturn]) -> None:
        try:
            identity = client.auth_test()
        except (SlackApiError, URLError, OSError) as err:
            fail(err, "checking the token")
        self._workspace = str(identity.get("url") or "https://slack.com/")
        self._bot_user = str(identity.get("user_id") or "")

    def _channel_ids(self, client: WebClient) -> dict[str, str]:
        """name -> id for every configured channel; names are looked up in conversations.list."""
        wanted = comma_list(self.options["channels"])
        found = {c: c for c in wanted if _CHANNEL_ID.fullmatch(c)}
        names = [c for c in wanted if c not in found]
        if names:
            known: dict[str, str] = {}
            pages = self._pages(
                client.conversations_list,
                "looking up channel names",
                types="public_channel,private_channel",
                exclude_archived=True,
            )
            for page in pages:
                known.update({str(c.get("name")): str(c.get("id")) for c in page.get("channels") or []})
            for name in names:
                if name not in known:
                    raise SourceError(
                        f"The bot sees no channel named #{name}: check the name, or invite the bot to the "
                        "channel (/invite @bot) if it is private."
                    )
                found[name] = known[name]
        return found

    def _pages(
        self,
        method: Callable[..., Any],
        doing: str,
        fail: Callable[[Exception, str], NoReturn] | None = None,
        **arguments: Any,
    ) -> Iterator[Mapping[str, Any]]:
        """Each page of a cursor-paginated method; its errors go to `fail` (a SourceError by default)."""
        try:
            yield from method(limit=PAGE_SIZE, **arguments)
        except (SlackApiError, URLError, OSError) as err:
            (fail or self._listing_failed)(err, doing)

    def _explain(self, err: Exception, doing: str) -> str:
        if not isinstance(err, SlackApiError):
            return f"Could not reach Slack at {settings.SLACK_API_URL} while {doing} ({network_reason(err)})."
        code = str(err.response.get("error") or f"HTTP {err.response.status_code}")
        variable = f"${self.options['token_env']}" if self.options.get("token_env") else "$SLACK_BOT_TOKEN"
        if code in _REFUSED_TOKEN:
            return f"Slack refused the token in {variable} ({code}) while {doing}: check the token and reinstall the app."
        if code == "missing_scope":
            needed = scrub(err.response.get("needed") or "", self._secrets())
            return (
                f"The Slack token in {variable} lacks the scope {needed or '(see the app settings)'} needed for "
                f"{doing}: add it under OAuth & Permissions and reinstall the app."
            )
        if code == "not_in_channel":
            return f"The bot is not in the channel ({doing}): invite it with /invite @bot."
        if code == "channel_not_found":
            return f"Slack has no channel the bot can see for {doing}: check the id, or invite the bot."
        return f"Slack answered {scrub(code, self._secrets())} while {doing}."

    def _secrets(self) -> dict[str, str]:
        return {**self.secrets, "SLACK_BOT_TOKEN": settings.SLACK_BOT_TOKEN}

    def _listing_failed(self, err: Exception, doing: str) -> NoReturn:
        raise SourceError(self._explain(err, doing)) from None

    def _item_failed(self, err: Exception, doing: str) -> NoReturn:
        raise ItemError(self._explain(err, doing)) from None


def clean_text(text: str, names: Callable[[str], str]) -> str:
    """Slack's mrkdwn as plain text people read: mentions by name, links with their labels."""

    def entity(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return "@" + names(target[1:])
        if target.startswith("#"):
            return "#" + (label or "channel")
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            return label or ("@" + special if special in ("here", "channel", "everyone") else "")
        if label and label != target.removeprefix("mailto:"):
            return f"{label} ({target})"
        return target.removeprefix("mailto:")

    text = re.sub(r"<([^<>]+)>", entity, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def _thread_version(message: Mapping[str, Any]) -> str:
    """The latest reply and the count of replies (a deleted reply changes it), plus the question's own
    edits and reactions; the hour, for threads recent enough that an answer may still be accepted."""
    parts = [str(message.get("latest_reply") or message.get("ts")), str(message.get("reply_count") or 0)]
    edited = (message.get("edited") or {}).get("ts")
    if edited:
        parts.append(f"edited {edited}")
    reactions = sorted(f"{r.get('name')}×{r.get('count', 0)}" for r in message.get("reactions") or [])
    if reactions:
        parts.append(" ".join(reactions))
    try:
        latest = float(message.get("latest_reply") or message.get("ts") or 0)
    except ValueError:
        latest = 0.0
    if time.time() - latest < RECHECK_DAYS * 86400:
        parts.append("recheck " + datetime.now(UTC).strftime("%Y-%m-%dT%H"))
    return " / ".join(parts)


def _title(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "") or "Slack thread"
    line = " ".join(line.split()).lstrip("#").strip() or "Slack thread"
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _quoted(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.splitlines())


def _day(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError):
        return "an unknown day"
