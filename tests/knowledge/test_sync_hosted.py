"""Confluence, Notion and Slack-channel sources synced end to end, each against a local server
speaking its real API to the real client library: a first sync, a sync with nothing changed, an
edit, a deletion, and a failed listing that must not prune (issue #13)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from console.knowledge import syncing
from console.knowledge.models import Document, Source, Sync
from console.knowledge.search import search
from console.training.models import TrainingPair
from tests.bots.slack_fake import FakeSlack
from tests.knowledge.api_fakes import FakeConfluence, FakeNotion, NotionPage, Page
from tests.knowledge.test_connector_notion import block
from tests.knowledge.test_connector_slack import ALICE, ASKER, BOB

pytestmark = pytest.mark.django_db


@dataclass
class World:
    """A source on a local server, and what the test does to the server between syncs."""

    source: Source
    items: int  # what its first sync lists
    edit: Callable[[], str]  # changes one item; a phrase only the new text holds
    delete: Callable[[], None]  # removes one item
    break_listing: Callable[[], None]
    fetched: Callable[[], int]  # requests that read an item's body so far
    url_start: str  # every document's link starts with it


def _confluence(collection, monkeypatch, settings) -> Iterator[World]:
    wiki = FakeConfluence(token="conf-token", page_size=2)
    wiki.add_page(Page("101", "ENG", "On-call", "<p>The primary is paged through PagerDuty.</p>"))
    wiki.add_page(Page("102", "ENG", "Deploys", "<p>No deploys after 15:00 on Fridays.</p>"))
    wiki.add_page(Page("201", "OPS", "VPN", "<p>Install WireGuard from the portal.</p>"))
    monkeypatch.setenv("CONFLUENCE_TOKEN", "conf-token")
    source = Source.objects.create(
        name="wiki",
        kind="confluence",
        collection=collection,
        options={"base_url": wiki.url, "spaces": ["ENG", "OPS"], "token_env": "CONFLUENCE_TOKEN"},
    )

    def edit() -> str:
        wiki.edit("101", "<p>The secondary is paged after 15 minutes of silence.</p>")
        return "secondary is paged after 15 minutes"

    def break_listing() -> None:
        wiki.status_override = 500

    yield World(
        source,
        3,
        edit,
        lambda: wiki.pages.pop("201") and None,
        break_listing,
        lambda: sum(1 for path in wiki.paths() if path.rstrip("/").split("/")[-1].isdigit()),
        wiki.url,
    )
    wiki.close()


def _notion(collection, monkeypatch, settings) -> Iterator[World]:
    notion = FakeNotion(token="secret_notion", page_size=2)
    notion.add_page(
        NotionPage("p-runbook", "Incident runbook", [block("b1", "paragraph", "Page the on-call engineer.")])
    )
    notion.add_page(NotionPage("p-vpn", "VPN", [block("v1", "paragraph", "Install WireGuard.")]))
    notion.add_page(NotionPage("p-pto", "Time off", [block("t1", "paragraph", "Ask two weeks ahead.")]))
    monkeypatch.setenv("NOTION_TOKEN", "secret_notion")
    source = Source.objects.create(
        name="notion",
        kind="notion",
        collection=collection,
        options={"base_url": notion.url, "token_env": "NOTION_TOKEN"},
    )

    def edit() -> str:
        notion.edit(
            "p-vpn",
            [block("v2", "paragraph", "Use the new Tailscale client now.")],
            "2026-02-01T09:30:00.000Z",
        )
        return "new Tailscale client"

    def break_listing() -> None:
        notion.status_override = 503

    yield World(
        source,
        3,
        edit,
        lambda: notion.pages.pop("p-pto") and None,
        break_listing,
        lambda: sum(1 for path in notion.paths() if "/children" in path),
        "https://www.notion.so/",
    )
    notion.close()


def _slack(collection, monkeypatch, settings) -> Iterator[World]:
    fake = FakeSlack()
    fake.token = "xoxb-sync-token"
    fake.people.update({ASKER: "Sam", ALICE: "Alice", BOB: "Bob"})
    settings.SLACK_API_URL, settings.SLACK_BOT_TOKEN = fake.url, fake.token
    fake.channels["C0HELPIT1"] = "help-it"
    vpn = fake.post("C0HELPIT1", ASKER, "How do I get on the VPN?")
    answer = fake.post("C0HELPIT1", ALICE, "Install WireGuard from the portal.", thread_ts=vpn["ts"])
    fake.react("C0HELPIT1", answer["ts"], "white_check_mark", ASKER)
    printer = fake.post("C0HELPIT1", BOB, "Which printer is on floor 2?")
    fake.post("C0HELPIT1", ALICE, "The one by the kitchen, called Kestrel.", thread_ts=printer["ts"])
    source = Source.objects.create(
        name="help-it", kind="slack", collection=collection, options={"channels": ["C0HELPIT1"]}
    )

    def edit() -> str:
        fake.post("C0HELPIT1", BOB, "It moved to floor 3 last week.", thread_ts=printer["ts"])
        return "moved to floor 3"

    def delete() -> None:
        fake.messages["C0HELPIT1"] = [
            m for m in fake.messages["C0HELPIT1"] if vpn["ts"] not in (m["ts"], m.get("thread_ts"))
        ]

    def break_listing() -> None:
        fake.errors["conversations.history"] = "not_in_channel"

    yield World(
        source,
        2,
        edit,
        delete,
        break_listing,
        lambda: len(fake.calls_to("conversations.replies")),
        "https://test.slack.com/archives/C0HELPIT1/p",  # the workspace URL auth.test gives
    )
    fake.close()


@pytest.fixture(params=["confluence", "notion", "slack"])
def world(request, collection, monkeypatch, settings) -> Iterator[World]:
    make = {"confluence": _confluence, "notion": _notion, "slack": _slack}[request.param]
    yield from make(collection, monkeypatch, settings)


def sync(world: World) -> Sync:
    result = syncing.sync_source(world.source.pk).sync
    world.source.refresh_from_db()
    return result


def documents(world: World) -> dict[str, Document]:
    return {d.item_key: d for d in Document.objects.filter(source_ref=world.source)}


def test_first_sync_no_change_edit_delete_and_a_failed_listing(world):
    first = sync(world)
    assert (first.status, first.listed, first.added, first.failed) == ("ok", world.items, world.items, 0), (
        first.error
    )
    indexed = documents(world)
    assert len(indexed) == world.items
    assert all(d.status == "indexed" and d.chunk_count > 0 for d in indexed.values())
    assert all(d.url.startswith(world.url_start) and d.url for d in indexed.values())
    versions = {key: d.version for key, d in indexed.items()}

    second = sync(world)
    assert (second.status, second.unchanged, second.added, second.updated) == ("ok", world.items, 0, 0)
    assert {key: d.version for key, d in documents(world).items()} == versions, "nothing re-indexed"

    phrase = world.edit()
    third = sync(world)
    assert (third.status, third.updated, third.added) == ("ok", 1, 0), third.error
    hits = search(phrase, collections=[world.source.collection.slug], k=1)
    assert hits and phrase.lower() in hits[0].text.lower()

    world.delete()
    fourth = sync(world)
    assert (fourth.status, fourth.deleted) == ("ok", 1), fourth.error
    assert len(documents(world)) == world.items - 1

    kept = set(documents(world))
    world.break_listing()
    failed = sync(world)
    assert failed.status == "failed" and failed.error
    assert world.source.status == Source.Status.FAILED and world.source.last_error
    assert set(documents(world)) == kept, "a failed listing prunes nothing"


@pytest.mark.parametrize("world", ["confluence", "notion"], indirect=True)
def test_a_sync_with_nothing_changed_reads_no_page_body(world):
    """Page versions say what changed (Slack has no such listing: recent threads are read again
    to see late answers and acceptances)."""
    sync(world)
    read = world.fetched()
    assert read == world.items
    sync(world)
    assert world.fetched() == read


@pytest.mark.parametrize("world", ["slack"], indirect=True)
def test_an_accepted_answer_in_a_slack_thread_is_a_candidate_pair_once(world):
    sync(world)
    sync(world)
    (pair,) = TrainingPair.objects.all()
    assert (pair.status, pair.question) == ("candidate", "How do I get on the VPN?")
    assert "WireGuard" in pair.answer
