"""Discord rendering: an answer and its sources as Discord markdown, in messages of at most 2000 characters.

Plain functions over plain data (an Answer's text and its `sources` list), so they are easy to test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from bots.text import rewrite_links, source_hosts, split_text, strip_control_characters
from console.conversations.models import SourceRef

MESSAGE_LIMIT = 2000  # Discord rejects longer message content
VOTE_EMOJI = {"👍": 1, "👎": -1}
ASKED_CHARS = 300  # of the question, quoted above an /ask answer that had to go to the channel
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f]")  # skin tones, emoji presentation
_MENTION = re.compile(r"<@!?(\d+)>")


def vote_value(emoji: str) -> int | None:
    """+1 for a 👍, -1 for a 👎 (any skin tone), None for any other reaction."""
    return VOTE_EMOJI.get(_EMOJI_MODIFIERS.sub("", emoji))


def strip_mention(content: str, user_id: int) -> str:
    """The message without mentions of `user_id` (`<@id>` or the older `<@!id>`)."""
    without = _MENTION.sub(lambda m: "" if int(m.group(1)) == user_id else m.group(0), content)
    return " ".join(without.split())


def source_link(source: SourceRef) -> str:
    """`[title](url)` for a document that came from a URL, else its title."""
    title = (source.get("document") or source.get("source") or "document").replace("[", "(").replace("]", ")")
    url = source.get("source") or ""
    if url.startswith(("http://", "https://")):
        return f"[{title}]({url})"
    return title


def safe_links(text: str, sources: Sequence[SourceRef]) -> str:
    """The model's text with control characters stripped and only links to a source's host kept;
    any other link shows as code (Discord links no URL inside code)."""

    def plain(label: str, url: str) -> str:
        return f"`{url}`" if label == url else f"{label} (`{url}`)"

    def link(label: str, url: str) -> str:
        return url if label == url else f"[{label.replace('[', '(').replace(']', ')')}]({url})"

    return rewrite_links(strip_control_characters(text), source_hosts(sources), link=link, plain=plain)


def render_answer(text: str, sources: Iterable[SourceRef]) -> str:
    sources = list(sources)
    text = safe_links(text, sources)
    links = [source_link(s) for s in sources]
    if not links:
        return text
    return f"{text}\n\n**Sources:** {' · '.join(links)}"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces within Discord's message limit."""
    return split_text(text, limit)


def answer_messages(text: str, sources: Iterable[SourceRef], *, note: str = "", asked: str = "") -> list[str]:
    """The messages that carry one answer: the line quoting the question (`asked`), the note for
    the asker (their question was cut) in italics, the text, then its sources, each within
    Discord's limit."""
    rendered = render_answer(text, sources)
    if note:
        rendered = f"*{note}*\n\n{rendered}"
    return split_message(f"{asked}\n\n{rendered}" if asked else rendered)


def asked_line(user_id: int, question: str) -> str:
    """The line `<@user> asked: …`, quoting the start of the question (replies parse no mentions,
    so nobody is pinged)."""
    quoted = " ".join(question.split())
    if len(quoted) > ASKED_CHARS:
        quoted = quoted[: ASKED_CHARS - 1].rstrip() + "…"
    return f"<@{user_id}> asked: {quoted}"


def vote_custom_id(answer_id: int, value: int) -> str:
    """The custom id of a 👍 (+1) or 👎 (-1) button: the gateway's VoteButton matches it, so a
    button works whichever process posted it, before or after a restart."""
    return f"answerbot:vote:{value:+d}:{answer_id}"


def vote_components(answer_id: int) -> list[dict]:
    """The 👍/👎 buttons as Discord's component JSON (one action row of two secondary buttons), for
    answers sent over the REST API; the same as the gateway's `vote_view(answer_id)`."""
    buttons = [
        {
            "type": 2,  # button
            "style": 2,  # secondary
            "disabled": False,
            "custom_id": vote_custom_id(answer_id, value),
            "emoji": {"id": None, "name": emoji},
        }
        for emoji, value in VOTE_EMOJI.items()
    ]
    return [{"type": 1, "components": buttons}]  # an action row
