"""Text helpers both chat platforms need: splitting long replies, and the rules for untrusted text
(control characters stripped, links only to the answer's own sources, long questions cut)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at a paragraph, line or word break where possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut >= limit // 2:
                break
        else:  # no break in the second half: cut hard rather than send tiny pieces
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


# --- what the model writes is untrusted ----------------------------------------------------------

# C0 and C1 controls except tab and newline, and the bidirectional overrides and isolates that can
# make a link or a name read backwards ("Trojan Source").
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# One pass over the three ways a reply can carry a link: Markdown `[text](url)` (Discord's masked
# link, `<url>` inside allowed), Slack's `<url|text>` or `<url>`, and a bare URL.
_LINK = re.compile(
    r"\[(?P<md_text>[^\]\n]{1,500})\]\(\s*<?(?P<md_url>https?://[^\s()<>`]+)>?\s*\)"
    r"|<(?P<angle_url>https?://[^\s|<>`]+)(?:\|(?P<angle_text>[^<>\n]{0,500}))?>"
    r"|(?P<bare_url>https?://[^\s<>()\[\]|`\"']+)",
    re.IGNORECASE,
)
QUESTION_CUT_NOTE = "Your question was longer than {limit:,} characters, so only its start was read."


def strip_control_characters(text: str) -> str:
    """The text without invisible control characters; tabs and newlines stay."""
    return _CONTROL_CHARACTERS.sub("", text)


def link_host(url: str) -> str:
    """The lower-case host of a URL, or "" when it has none."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def source_hosts(sources: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Hosts of the answer's sources that came from a URL: the only ones its links may point to."""
    urls = (str(source.get("source") or "") for source in sources)
    return frozenset(
        host for url in urls if url.lower().startswith(("http://", "https://")) if (host := link_host(url))
    )


def rewrite_links(
    text: str,
    allowed_hosts: frozenset[str],
    *,
    link: Callable[[str, str], str],
    plain: Callable[[str, str], str],
) -> str:
    """Every link in `text` through `link(text, url)` if its host is allowed, else `plain(text, url)`.

    A bare URL's text is the URL itself. The model writes what a document (or a user) talked it
    into; a masked link to a look-alike site is phishing, so only a source's own host stays a link.
    """

    def rewrite(match: re.Match[str]) -> str:
        trailing = ""
        if match["bare_url"]:  # a sentence's full stop after a URL is not part of it
            url = match["bare_url"].rstrip(".,;:!?")
            label, trailing = url, match["bare_url"][len(url) :]
        else:
            url = match["md_url"] or match["angle_url"]
            label = match["md_text"] or match["angle_text"] or url
        render = link if link_host(url) in allowed_hosts else plain
        return render(label, url) + trailing

    return _LINK.sub(rewrite, text)


def clean_question(text: str, limit: int) -> tuple[str, str]:
    """A chat question as answering takes it: control characters out, cut to `limit` characters.

    Returns (question, note): the note tells the asker their question was cut, "" if it fit.
    """
    text = strip_control_characters(text).strip()
    if len(text) <= limit:
        return text, ""
    return text[:limit].rstrip(), QUESTION_CUT_NOTE.format(limit=limit)
