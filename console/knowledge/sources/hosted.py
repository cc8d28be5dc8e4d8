"""Shared by the connectors to hosted services (Confluence, Notion, Slack): option checks and tokens.

A token is named by an environment variable (`token_env`); the caller reads its value into
`secrets`, and every message a connector raises goes through `scrub` so no token reaches an error,
a log line or the admin, whatever a server echoed back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from console.knowledge.sources.base import OptionsError, SourceError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# How the tokens of the services we connect to begin (Notion, Slack, Atlassian, GitHub).
_TOKEN_PREFIXES = ("secret_", "ntn_", "xox", "atatt", "ghp_", "github_pat_")
# Long enough that the server's own text is useful, short enough for the admin's status column.
MAX_DETAIL = 200


def comma_list(value: Any) -> list[str]:
    """'ENG, OPS' or ['ENG', 'OPS'] -> ['ENG', 'OPS'] (blanks dropped, order kept, duplicates once)."""
    parts: Iterable[Any] = value.split(",") if isinstance(value, str) else (value or ())
    seen: dict[str, None] = {}
    for part in parts:
        text = str(part).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def check_env_name(kind: str, option: str, value: Any) -> str:
    """The name of an environment variable (not its value: a token pasted here is refused)."""
    name = str(value or "").strip().removeprefix("$")
    if name and (not _ENV_NAME.fullmatch(name) or name.lower().startswith(_TOKEN_PREFIXES)):
        raise OptionsError(
            f"The {kind} option {option!r} names the environment variable that holds the token "
            "(e.g. CONFLUENCE_TOKEN), not the token itself: set the variable and give its name."
        )
    return name


def check_http_url(kind: str, option: str, value: Any) -> str:
    """An absolute http(s) URL without a trailing slash, or OptionsError."""
    url = str(value or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionsError(
            f"The {kind} option {option!r} must be an http(s) URL such as https://wiki.example.com, "
            f"not {url[:80]!r}."
        )
    if parts.username or parts.password:
        raise OptionsError(
            f"The {kind} option {option!r} must not carry credentials: put the token in an "
            "environment variable and name it in token_env."
        )
    return url


def token_from(service: str, secrets: Mapping[str, str], env_name: str) -> str:
    """The token held by `$env_name`, or SourceError saying which variable to set."""
    token = (secrets.get(env_name) or "").strip()
    if not token:
        raise SourceError(
            f"The environment variable ${env_name} that holds the {service} token is not set (or empty) "
            "in the process that syncs: set it for the web and worker processes and sync again."
        )
    return token


def network_reason(err: BaseException) -> str:
    """A short reason for a failed connection ("connection refused", "host not found", "timed out")."""
    text = f"{type(err).__name__} {err} {err.__cause__ or ''} {err.__context__ or ''}".lower()
    for needles, reason in (
        (("refused",), "connection refused"),
        (
            ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution"),
            "host not found",
        ),
        (("timed out", "timeout"), "timed out"),
        (("certificate", "ssl"), "TLS/certificate error"),
        (("reset by peer", "remote end closed", "remotedisconnected"), "the connection was dropped"),
    ):
        if any(needle in text for needle in needles):
            return reason
    return type(err).__name__


def server_text(text: Any, secrets: Mapping[str, str]) -> str:
    """What a server said about an error, scrubbed; "" when it sent an HTML page instead of a message."""
    message = scrub(text, secrets)
    return "" if "<html" in message.lower() or "<!doctype" in message.lower() else message


def scrub(text: Any, secrets: Mapping[str, str]) -> str:
    """`text` shortened to one line, with every secret value replaced by '***'."""
    message = " ".join(str(text).split())
    for value in secrets.values():
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    if len(message) > MAX_DETAIL:
        message = message[: MAX_DETAIL - 1] + "…"
    return message
