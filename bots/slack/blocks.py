"""Slack message and modal payloads for answers: mrkdwn text, source links, vote buttons.

Pure functions of an Answer's fields, so the listeners in bots/slack/app.py stay a few lines each.
Slack's limits: a section's text is at most 3000 characters and a message at most 50 blocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from bots.text import rewrite_links, source_hosts, split_text, strip_control_characters
from console.conversations.models import Feedback, SourceRef

SECTION_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
THINKING = "_Thinking…_"
HINT = "Ask me a question after the mention, e.g. _@answerbot how do I get VPN access?_"

VOTE_UP = "answer_vote_up"
VOTE_DOWN = "answer_vote_down"
FEEDBACK_FORM = "answer_feedback_form"
CATEGORY_BLOCK = "category"
REASON_BLOCK = "reason"
BETTER_BLOCK = "better_answer"
INPUT = "text"

_MD_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_MD_STRIKE = re.compile(r"~~(.+?)~~")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_MD_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str, allowed_hosts: frozenset[str] = frozenset()) -> str:
    """The model writes Markdown; Slack reads mrkdwn (*bold*, <url|text>, no headings).

    Control characters go first (the link placeholders below are control characters), and only
    links to `allowed_hosts` (the answer's sources) stay links; others show as code, unclickable.
    """
    text = rewrite_links(
        strip_control_characters(markdown),
        allowed_hosts,
        link=lambda label, url: f"\x00{url}\x01{label.replace('|', '¦')}\x02",
        plain=_plain_link,
    )
    text = escape(text).replace("\x00", "<").replace("\x01", "|").replace("\x02", ">")
    text = _MD_HEADING.sub(lambda m: f"*{m.group(1)}*", text)
    text = _MD_BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _MD_BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    return _MD_STRIKE.sub(r"~\1~", text)


def _plain_link(label: str, url: str) -> str:
    """A link that is not to a source, as text: the URL in code, which Slack never links."""
    return f"`{url}`" if label == url else f"{label} (`{url}`)"


def source_link(source: SourceRef) -> str:
    """`<url|title>` when the document came from a URL, else its title."""
    title = escape(str(source.get("document") or source.get("source") or "untitled")).replace("|", "¦")
    where = str(source.get("source") or "")
    if where.startswith(("http://", "https://")) and not any(c in where for c in "<>| "):
        return f"<{where}|{title}>"
    return title


def sources_line(sources: Sequence[SourceRef]) -> str:
    line = "*Sources:* " + "  ·  ".join(
        f"[{s.get('number', i)}] {source_link(s)}" for i, s in enumerate(sources, 1)
    )
    return line if len(line) <= SECTION_LIMIT else line[: SECTION_LIMIT - 1] + "…"


def vote_buttons(answer_id: int) -> dict:
    def button(emoji: str, label: str, action_id: str) -> dict:
        text = {"type": "plain_text", "text": f"{emoji} {label}", "emoji": True}
        return {"type": "button", "text": text, "action_id": action_id, "value": str(answer_id)}

    return {
        "type": "actions",
        "block_id": f"votes-{answer_id}",
        "elements": [button("👍", "Helpful", VOTE_UP), button("👎", "Not helpful", VOTE_DOWN)],
    }


def answer_messages(
    answer_id: int, text: str, sources: Sequence[SourceRef], *, asked: str = "", note: str = ""
) -> list[dict]:
    """Chat messages (`text` fallback and `blocks`) for an answer: the first replaces the placeholder.

    `asked` is a line quoting the question (for /ask, whose text Slack does not show to others);
    `note` a line for the asker (their question was cut). Sources and the vote buttons close the
    last message.
    """
    blocks: list[dict] = []
    for line in (asked, escape(note)):
        if line:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line[:SECTION_LIMIT]}]})
    pieces = split_text(to_mrkdwn(text, source_hosts(sources)), SECTION_LIMIT)
    # verbatim: Slack turns no bare URL, #channel or @mention of the model's text into a link.
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": piece, "verbatim": True}} for piece in pieces
    ]
    if sources:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": sources_line(sources)}]})
    blocks.append(vote_buttons(answer_id))
    messages = []
    for start in range(0, len(blocks), BLOCKS_PER_MESSAGE):
        part = blocks[start : start + BLOCKS_PER_MESSAGE]
        fallback = next((b["text"]["text"] for b in part if b["type"] == "section"), pieces[-1])
        messages.append({"text": fallback, "blocks": part})
    return messages


def feedback_form(answer_id: int) -> dict:
    """The modal a 👎 opens: what was wrong (a category, required), details and a better answer (optional)."""

    def field(block_id: str, label: str, placeholder: str, *, optional: bool) -> dict:
        return {
            "type": "input",
            "block_id": block_id,
            "optional": optional,
            "label": {"type": "plain_text", "text": label},
            "element": {
                "type": "plain_text_input",
                "action_id": INPUT,
                "multiline": True,
                "placeholder": {"type": "plain_text", "text": placeholder},
            },
        }

    return {
        "type": "modal",
        "callback_id": FEEDBACK_FORM,
        "private_metadata": json.dumps({"answer": answer_id}),
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            category_field(),
            field(REASON_BLOCK, "Details", "Optional: what exactly was wrong", optional=True),
            field(
                BETTER_BLOCK,
                "A better answer",
                "Optional: what the bot should have said (a curator reviews it)",
                optional=True,
            ),
        ],
    }


def category_field() -> dict:
    """A required choice of Feedback.Category, the same list Discord's form offers."""
    options = [
        {"text": {"type": "plain_text", "text": label}, "value": value}
        for value, label in Feedback.Category.choices
    ]
    return {
        "type": "input",
        "block_id": CATEGORY_BLOCK,
        "label": {"type": "plain_text", "text": "What was wrong with the answer?"},
        "element": {
            "type": "static_select",
            "action_id": INPUT,
            "placeholder": {"type": "plain_text", "text": "Choose one"},
            "options": options,
        },
    }


def submitted_feedback(view: dict) -> tuple[int, str, str, str]:
    """(answer id, category, reason, better answer) from a submitted feedback form."""
    values = view["state"]["values"]

    def state(block_id: str) -> dict:
        return (values.get(block_id) or {}).get(INPUT) or {}

    return (
        int(json.loads(view["private_metadata"])["answer"]),
        (state(CATEGORY_BLOCK).get("selected_option") or {}).get("value") or "",
        (state(REASON_BLOCK).get("value") or "").strip(),
        state(BETTER_BLOCK).get("value") or "",
    )
