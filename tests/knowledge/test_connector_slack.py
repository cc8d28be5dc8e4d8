"""The Slack-channel connector, with the real slack_sdk WebClient against the local Slack fake."""

from __future__ import annotations

import logging
import time

import pytest

from console.knowledge.sources.base import CONNECTORS, ItemError, OptionsError, SourceError
from console.knowledge.sources.slack import SlackConnector, clean_text
from ml.parsing import parse_document
from tests.bots.slack_fake import BOT_ID, BOT_USER, FakeSlack
from tests.knowledge.api_fakes import closed_port_url

TOKEN = "xoxb-sync-test-token"
ASKER, ALICE, BOB, CURATOR = "U0ASKER1", "U0ALICE1", "U0BOB001", "U0CURAT1"


@pytest.fixture
def fake():
    slack = FakeSlack()
    slack.token = TOKEN
    slack.people.update({ASKER: "Sam", ALICE: "Alice", BOB: "Bob", CURATOR: "Carol"})
    yield slack
    slack.close()


@pytest.fixture
def helpdesk(fake, settings):
    """#help-it: two answered threads (one with an accepted answer), one unanswered question, one
    thread only the bot answered, and chatter."""
    settings.SLACK_API_URL = fake.url
    settings.SLACK_BOT_TOKEN = TOKEN
    fake.channels["C0HELPIT1"] = "help-it"
    vpn = fake.post("C0HELPIT1", ASKER, "How do I get on the VPN? <@U0ALICE1> maybe you know?")
    answer = fake.post(
        "C0HELPIT1",
        ALICE,
        "Install WireGuard from <https://portal.example.com|the portal>.",
        thread_ts=vpn["ts"],
    )
    fake.post("C0HELPIT1", ASKER, "Thanks, works!", thread_ts=vpn["ts"])
    fake.react("C0HELPIT1", answer["ts"], "white_check_mark", ASKER)
    fake.post("C0HELPIT1", ASKER, "Anyone in the office today?")
    printer = fake.post("C0HELPIT1", BOB, "Which printer is on floor 2?")
    fake.post("C0HELPIT1", ALICE, "The one by the kitchen, called Kestrel.", thread_ts=printer["ts"])
    bot_only = fake.post("C0HELPIT1", ASKER, "What is the wifi password?")
    fake.post(
        "C0HELPIT1", BOT_USER, "It is on the card at reception.", thread_ts=bot_only["ts"], bot_id=BOT_ID
    )
    fake.post("C0HELPIT1", "", "", subtype="channel_join")
    return {"vpn": vpn, "answer": answer, "printer": printer, "bot_only": bot_only}


def connector(**options) -> SlackConnector:
    return SlackConnector(SlackConnector.validate({"channels": "C0HELPIT1", **options}))


def listing(conn: SlackConnector) -> dict:
    return {item.key: item for item in conn.items()}


def test_registered_under_its_kind():
    assert CONNECTORS["slack"] is SlackConnector


def test_lists_threads_people_answered_across_history_pages(fake, helpdesk):
    items = listing(connector())

    vpn, printer = helpdesk["vpn"]["ts"], helpdesk["printer"]["ts"]
    assert set(items) == {f"C0HELPIT1/{vpn}", f"C0HELPIT1/{printer}"}
    item = items[f"C0HELPIT1/{printer}"]
    assert item.title == "Which printer is on floor 2?"
    assert item.url == f"https://test.slack.com/archives/C0HELPIT1/p{printer.replace('.', '')}"
    assert len(fake.calls_to("conversations.history")) == 3  # 5 top-level messages, 2 per page
    assert all(c.args["channel"] == "C0HELPIT1" for c in fake.calls_to("conversations.history"))
    assert not fake.calls_to("conversations.replies")  # listing reads no thread


def test_channels_can_be_named(fake, helpdesk):
    fake.channels.update({"C0RANDOM1": "random", "C0GENERAL": "general"})

    items = listing(connector(channels="#help-it"))

    assert len(items) == 2
    assert fake.calls_to("conversations.list")


def test_an_unknown_channel_name_is_a_source_error(fake, helpdesk):
    with pytest.raises(SourceError, match="no channel named #nope"):
        list(connector(channels="help-it,nope").items())


def test_fetch_writes_the_thread_with_names_answers_and_permalink(fake, helpdesk):
    conn = connector()
    item = listing(conn)[f"C0HELPIT1/{helpdesk['vpn']['ts']}"]

    content = conn.fetch(item)

    markdown = content.data.decode()
    assert content.filename == "thread.md"
    assert content.title == "How do I get on the VPN? @Alice maybe you know?"
    assert "Asked by Sam on 2023-11-14:" in markdown
    assert (
        "## Answer by Alice (accepted ✅)\n\nInstall WireGuard from the portal (https://portal.example.com)."
        in markdown
    )
    assert "## Answer by Sam\n\nThanks, works!" in markdown
    assert f"Thread: {item.url}" in markdown
    assert "<@" not in markdown and "U0ALICE1" not in markdown
    parsed = parse_document(content.filename, content.data)
    assert "Install WireGuard" in " ".join(s.text for s in parsed.sections)


def test_an_accepted_answer_nominates_a_candidate_pair(fake, helpdesk):
    conn = connector()
    items = listing(conn)

    accepted = conn.fetch(items[f"C0HELPIT1/{helpdesk['vpn']['ts']}"])
    plain = conn.fetch(items[f"C0HELPIT1/{helpdesk['printer']['ts']}"])

    assert [(c.question, c.answer) for c in accepted.candidates] == [
        (
            "How do I get on the VPN? @Alice maybe you know?",
            "Install WireGuard from the portal (https://portal.example.com).",
        )
    ]
    assert plain.candidates == ()


def test_only_the_allowed_people_accept_and_never_the_author(fake, helpdesk):
    printer = helpdesk["printer"]["ts"]
    answer = next(m for m in fake.messages["C0HELPIT1"] if m.get("thread_ts") == printer)
    fake.react("C0HELPIT1", answer["ts"], "white_check_mark", ALICE)  # the author herself
    fake.react("C0HELPIT1", helpdesk["answer"]["ts"], "heavy_check_mark", CURATOR)  # another reaction

    curated = connector(accepted_by=CURATOR)
    items = listing(curated)
    assert curated.fetch(items[f"C0HELPIT1/{printer}"]).candidates == ()
    assert curated.fetch(items[f"C0HELPIT1/{helpdesk['vpn']['ts']}"]).candidates == ()  # Sam is not Carol

    fake.react("C0HELPIT1", answer["ts"], "white_check_mark", CURATOR)
    assert len(curated.fetch(items[f"C0HELPIT1/{printer}"]).candidates) == 1

    by_check = connector(accept_reaction=":heavy_check_mark:")
    assert len(by_check.fetch(items[f"C0HELPIT1/{helpdesk['vpn']['ts']}"]).candidates) == 1


def test_a_new_reply_changes_the_version_and_a_deleted_thread_leaves_the_listing(fake, helpdesk):
    conn = connector()
    vpn, printer = f"C0HELPIT1/{helpdesk['vpn']['ts']}", f"C0HELPIT1/{helpdesk['printer']['ts']}"
    before = listing(conn)

    fake.post("C0HELPIT1", BOB, "It moved to floor 3 last week.", thread_ts=helpdesk["printer"]["ts"])
    fake.messages["C0HELPIT1"] = [
        m for m in fake.messages["C0HELPIT1"] if helpdesk["vpn"]["ts"] not in (m["ts"], m.get("thread_ts"))
    ]
    after = listing(conn)

    assert vpn not in after
    assert after[printer].version != before[printer].version
    assert "It moved to floor 3" in conn.fetch(after[printer]).data.decode()


def test_an_unchanged_old_thread_keeps_its_version(fake, helpdesk):
    conn = connector()
    assert listing(conn) == listing(connector())


def test_a_recent_thread_is_rechecked_so_a_late_acceptance_is_seen(fake, helpdesk):
    now = f"{time.time():.6f}"
    question = fake.post("C0HELPIT1", ASKER, "Where are the spare laptops?", ts=now)
    fake.post("C0HELPIT1", ALICE, "In the IT cupboard.", thread_ts=now, ts=f"{time.time() + 1:.6f}")

    version = listing(connector())[f"C0HELPIT1/{question['ts']}"].version

    assert "recheck" in version
    assert "recheck" not in listing(connector())[f"C0HELPIT1/{helpdesk['vpn']['ts']}"].version


def test_a_thread_gone_before_fetch_is_an_item_error(fake, helpdesk):
    conn = connector()
    item = listing(conn)[f"C0HELPIT1/{helpdesk['printer']['ts']}"]
    fake.delete("C0HELPIT1", helpdesk["printer"]["ts"])

    with pytest.raises(ItemError, match="thread_not_found"):
        conn.fetch(item)


def test_a_refused_token_is_a_source_error_that_names_the_variable_not_the_token(fake, helpdesk, settings):
    settings.SLACK_BOT_TOKEN = "xoxb-wrong-value"

    with pytest.raises(SourceError) as refused:
        list(connector().items())

    assert "Slack refused the token in $SLACK_BOT_TOKEN (invalid_auth)" in str(refused.value)
    assert "xoxb-wrong-value" not in str(refused.value)


def test_token_env_names_another_token(fake, helpdesk, settings):
    settings.SLACK_BOT_TOKEN = ""
    options = SlackConnector.validate({"channels": "C0HELPIT1", "token_env": "SLACK_READER_TOKEN"})

    assert len(list(SlackConnector(options, {"SLACK_READER_TOKEN": TOKEN}).items())) == 2
    with pytest.raises(SourceError, match=r"\$SLACK_READER_TOKEN is not set"):
        list(SlackConnector(options, {}).items())


@pytest.mark.parametrize(
    ("error", "complaint"),
    [
        ("not_in_channel", "invite it with /invite"),
        ("missing_scope", "lacks the scope"),
        ("channel_not_found", "no channel the bot can see"),
    ],
)
def test_history_errors_are_source_errors_people_can_act_on(fake, helpdesk, error, complaint):
    fake.errors["conversations.history"] = error

    with pytest.raises(SourceError, match=complaint):
        list(connector().items())


def test_an_unreachable_slack_is_a_source_error(helpdesk, settings):
    settings.SLACK_API_URL = closed_port_url() + "/api/"

    with pytest.raises(SourceError, match="Could not reach Slack at .* \\(connection refused\\)"):
        list(connector().items())


def test_rate_limits_are_waited_out(fake, helpdesk):
    fake.rate_limit_once("conversations.history", retry_after=1)

    assert len(listing(connector())) == 2


def test_the_token_never_reaches_the_logs(fake, helpdesk, caplog):
    caplog.set_level(logging.DEBUG)
    conn = connector()
    for item in conn.items():
        conn.fetch(item)

    assert TOKEN not in caplog.text


def test_slack_markup_becomes_plain_text():
    names = {"U1": "Alice"}.get
    assert (
        clean_text("<@U1> see <#C1|ops>, <!here> &lt;3 <mailto:a@b.c|a@b.c> <https://x.io>", names)
        == "@Alice see #ops, @here <3 a@b.c https://x.io"
    )


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({}, "needs the option 'channels'"),
        ({"channels": "help it"}, "channel ids"),
        ({"channels": "C0HELPIT1", "accepted_by": "alice"}, "member ids"),
        ({"channels": "C0HELPIT1", "accept_reaction": "✅"}, "reaction's name"),
        ({"channels": "C0HELPIT1", "days": "-3"}, "whole number"),
        ({"channels": "C0HELPIT1", "token_env": "xoxb-123-456"}, "not the token"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options, complaint):
    with pytest.raises(OptionsError, match=complaint):
        SlackConnector.validate(options)


def test_options_are_cleaned():
    assert SlackConnector.validate({"channels": "#help-it, C0HELPIT1", "accepted_by": "U0CURAT1 "}) == {
        "channels": "help-it,C0HELPIT1",
        "accept_reaction": "white_check_mark",
        "accepted_by": "U0CURAT1",
        "days": "",
        "token_env": "",
    }
