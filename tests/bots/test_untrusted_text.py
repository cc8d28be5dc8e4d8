"""What the model writes is untrusted: links stay links only to the answer's sources, control
characters never reach Slack or Discord, and long chat questions are cut with a note."""

import pytest

from bots.discord import format as discord_format
from bots.slack import blocks as slack_blocks
from bots.text import QUESTION_CUT_NOTE, clean_question, rewrite_links, source_hosts, strip_control_characters

SOURCES = [
    {"number": 1, "document": "On-call", "source": "https://wiki.example.com/oncall.md"},
    {"number": 2, "document": "Expenses", "source": "expenses.md"},
]
PHISHING = [
    "[Reset your password](https://wiki.example.com.evil.test/login)",
    "[wiki](https://evil.test/wiki.example.com)",
    "<https://evil.test/login|Reset your password>",
    "<https://evil.test/login>",
    "https://evil.test/login",
    "[Reset](<https://evil.test/login>)",
    "[Reset](HTTPS://EVIL.TEST/login)",
    "[Reset](https://user@evil.test/login)",
]


def slack_text(text: str, sources=SOURCES) -> str:
    (message,) = slack_blocks.answer_messages(1, text, sources)
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")


def discord_text(text: str, sources=SOURCES) -> str:
    return "\n".join(discord_format.answer_messages(text, sources)).split("**Sources:**")[0]


@pytest.mark.parametrize("link", PHISHING)
def test_links_to_other_hosts_are_plain_text_on_slack(link):
    text = slack_text(f"Do this: {link} now.")

    assert "<http" not in text.lower() and "evil.test" in text.lower()
    assert "`https://" in text.lower()


@pytest.mark.parametrize("link", PHISHING)
def test_links_to_other_hosts_are_plain_text_on_discord(link):
    text = discord_text(f"Do this: {link} now.")

    assert "](" not in text and "evil.test" in text.lower()
    # Discord links every bare URL outside code: each one must sit inside backticks.
    outside_code = text.split("`")[::2]
    assert not any("://" in part for part in outside_code), text


def test_links_to_a_sources_host_stay_links():
    text = "See [the runbook](https://wiki.example.com/rb) or https://wiki.example.com/oncall.md."

    assert "<https://wiki.example.com/rb|the runbook>" in slack_text(text)
    assert "<https://wiki.example.com/oncall.md|https://wiki.example.com/oncall.md>." in slack_text(text)
    assert "[the runbook](https://wiki.example.com/rb)" in discord_text(text)
    assert " https://wiki.example.com/oncall.md." in discord_text(text)


def test_without_url_sources_no_link_survives():
    text = "See [the runbook](https://wiki.example.com/rb)."

    assert "<https" not in slack_text(text, sources=[SOURCES[1]])
    assert "](" not in discord_text(text, sources=[])


def test_slack_answer_sections_are_verbatim():
    (message,) = slack_blocks.answer_messages(1, "Ask @channel in #general", SOURCES)

    sections = [b for b in message["blocks"] if b["type"] == "section"]
    assert sections and all(b["text"]["verbatim"] is True for b in sections)


def test_control_characters_are_stripped_before_formatting():
    text = "Pay\x00 the\x1b[31m invoice\u202e txt.exe\u2066 today\x07.\nNew line\tand tab."

    for rendered in (slack_text(text), discord_text(text)):
        assert strip_control_characters(rendered) == rendered
        assert "Pay the[31m invoice txt.exe today.\nNew line\tand tab." in rendered


def test_control_characters_cannot_forge_a_slack_link():
    """\\x00 \\x01 \\x02 are Slack's link placeholders inside to_mrkdwn; the model can't write them."""
    text = slack_text("\x00https://evil.test\x01Reset\x02")

    assert "<https://evil.test|" not in text


def test_source_hosts_are_the_hosts_of_url_sources():
    assert source_hosts(SOURCES + [{"source": "ftp://files.example.com/x"}, {}]) == {"wiki.example.com"}


def test_rewrite_keeps_the_full_stop_after_a_bare_url():
    rewritten = rewrite_links(
        "Go to https://a.example/x.", frozenset(), link=lambda t, u: "L", plain=lambda t, u: f"[{u}]"
    )

    assert rewritten == "Go to [https://a.example/x]."


def test_long_questions_are_cut_with_a_note():
    assert clean_question("  short\x00 question ", 100) == ("short question", "")
    question, note = clean_question("word " * 100, 50)
    assert len(question) <= 50 and question.startswith("word word")
    assert note == QUESTION_CUT_NOTE.format(limit=50) and "50" in note
