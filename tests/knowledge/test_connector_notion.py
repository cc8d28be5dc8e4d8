"""The Notion connector, with the real notion-client against a local Notion API."""

from __future__ import annotations

import logging

import pytest

from console.knowledge.sources.base import CONNECTORS, ItemError, OptionsError, SourceError
from console.knowledge.sources.notion import NotionConnector
from ml.parsing import parse_document
from tests.knowledge.api_fakes import FakeNotion, NotionPage, closed_port_url

TOKEN = "secret_notion_token"


def text(content: str, **annotations) -> dict:
    href = annotations.pop("href", None)
    return {
        "type": "text",
        "text": {"content": content, "link": None},
        "annotations": {"bold": False, "code": False, **annotations},
        "plain_text": content,
        "href": href,
    }


def block(block_id: str, kind: str, content: str = "", children: list | None = None, **data) -> dict:
    body = {"rich_text": [text(content)] if content else [], **data}
    found = {"id": block_id, "type": kind, kind: body}
    if children:
        found["children"] = children
    return found


def row(row_id: str, *cells: str) -> dict:
    return {"id": row_id, "type": "table_row", "table_row": {"cells": [[text(c)] for c in cells]}}


RUNBOOK = [
    block("b1", "heading_1", "Incidents"),
    block("b2", "paragraph", "Page the on-call engineer through PagerDuty."),
    block(
        "b3",
        "bulleted_list_item",
        "Open a channel",
        children=[block("b3a", "bulleted_list_item", "Name it #inc-<date>")],
    ),
    block("b4", "bulleted_list_item", "Write a timeline"),
    block("b5", "to_do", "Post-mortem within 5 days", checked=True),
    block("b6", "code", "kubectl rollout undo deploy/api", language="bash"),
    block("b7", "quote", "Blameless, always."),
    block(
        "b8",
        "table",
        children=[
            row("r1", "Severity", "Response"),
            row("r2", "SEV1", "15 minutes"),
            row("r3", "SEV2", "1 hour"),
        ],
        table_width=2,
        has_column_header=True,
    ),
    block("b9", "child_page", title="Old notes"),
]


@pytest.fixture
def notion():
    fake = FakeNotion(token=TOKEN, page_size=2)
    fake.add_page(NotionPage("p-runbook", "Incident runbook", RUNBOOK))
    fake.add_page(
        NotionPage("p-vpn", "VPN", [block("v1", "paragraph", "Install WireGuard from the portal.")])
    )
    fake.add_page(
        NotionPage("p-pto", "Time off", [block("t1", "paragraph", "Ask your manager two weeks ahead.")])
    )
    fake.data_sources["ds-faq"] = "FAQ"
    fake.add_page(
        NotionPage(
            "p-faq-1",
            "Where is the wiki?",
            [],
            data_source="ds-faq",
            properties={
                "Answer": {"id": "a", "type": "rich_text", "rich_text": [text("At wiki.example.com.")]}
            },
        )
    )
    fake.hidden_from_search.add("p-faq-1")  # only the database query lists it
    yield fake
    fake.close()


def connector(url: str, secrets: dict | None = None) -> NotionConnector:
    cleaned = NotionConnector.validate({"base_url": url, "token_env": "NOTION_TOKEN"})
    return NotionConnector(cleaned, {"NOTION_TOKEN": TOKEN} if secrets is None else secrets)


def listing(conn: NotionConnector) -> dict:
    return {item.key: item for item in conn.items()}


def test_registered_under_its_kind():
    assert CONNECTORS["notion"] is NotionConnector


def test_lists_shared_pages_and_database_rows_across_result_pages(notion):
    items = listing(connector(notion.url))

    assert set(items) == {"p-runbook", "p-vpn", "p-pto", "p-faq-1"}
    assert items["p-vpn"].version == "2026-01-05T10:00:00.000Z"
    assert items["p-vpn"].title == "VPN"
    assert items["p-vpn"].url == "https://www.notion.so/VPN-pvpn"
    assert notion.paths("POST").count("/v1/search") == 2  # 4 results, 2 per answer
    assert "/v1/data_sources/ds-faq/query" in notion.paths("POST")


def test_fetch_renders_blocks_as_markdown(notion):
    conn = connector(notion.url)
    content = conn.fetch(listing(conn)["p-runbook"])

    markdown = content.data.decode()
    assert content.filename == "page.md" and content.title == "Incident runbook"
    assert "# Incidents\n\nPage the on-call engineer through PagerDuty." in markdown
    assert (
        "- Open a channel\n  - Name it #inc-<date>\n- Write a timeline\n- [x] Post-mortem within 5 days"
        in markdown
    )
    assert "```bash\nkubectl rollout undo deploy/api\n```" in markdown
    assert "> Blameless, always." in markdown
    assert "| Severity | Response |\n| --- | --- |\n| SEV1 | 15 minutes |\n| SEV2 | 1 hour |" in markdown
    assert "Old notes" not in markdown  # a child page is its own item

    parsed = parse_document(content.filename, content.data)
    assert parsed.title == "Incident runbook"
    assert "SEV1" in " ".join(s.text for s in parsed.sections)


def test_a_database_row_keeps_its_properties(notion):
    conn = connector(notion.url)
    markdown = conn.fetch(listing(conn)["p-faq-1"]).data.decode()

    assert "title: Where is the wiki?" in markdown
    assert "- **Answer**: At wiki.example.com." in markdown


def test_an_edit_changes_the_version_and_a_deletion_drops_the_item(notion):
    conn = connector(notion.url)
    before = listing(conn)

    notion.edit(
        "p-vpn", [block("v2", "paragraph", "Use the new Tailscale client.")], "2026-02-01T09:30:00.000Z"
    )
    del notion.pages["p-pto"]
    after = listing(conn)

    assert after["p-vpn"].version == "2026-02-01T09:30:00.000Z" != before["p-vpn"].version
    assert after["p-runbook"].version == before["p-runbook"].version
    assert "p-pto" not in after
    assert b"Tailscale" in conn.fetch(after["p-vpn"]).data


def test_a_page_gone_between_listing_and_fetch_is_an_item_error(notion):
    conn = connector(notion.url)
    item = listing(conn)["p-vpn"]
    del notion.pages["p-vpn"]

    with pytest.raises(ItemError, match="404"):
        conn.fetch(item)


def test_a_refused_token_is_a_source_error_that_names_the_variable_not_the_token(notion):
    conn = connector(notion.url, secrets={"NOTION_TOKEN": "secret_wrong_value"})

    with pytest.raises(SourceError) as refused:
        list(conn.items())

    assert "Notion refused the token in $NOTION_TOKEN (401)" in str(refused.value)
    assert "secret_wrong_value" not in str(refused.value)


def test_forbidden_is_a_source_error(notion):
    notion.status_override = 403

    with pytest.raises(SourceError, match=r"refused the token in \$NOTION_TOKEN \(403\)"):
        list(connector(notion.url).items())


def test_an_unreachable_host_is_a_source_error():
    url = closed_port_url()
    with pytest.raises(SourceError, match=f"Could not reach Notion at {url}.*connection refused"):
        list(connector(url).items())


def test_a_sign_in_page_instead_of_the_api_is_a_source_error(notion):
    notion.login_page = True

    with pytest.raises(SourceError, match="did not answer like Notion's API"):
        list(connector(notion.url).items())


def test_a_missing_token_variable_is_a_source_error(notion):
    with pytest.raises(SourceError, match=r"\$NOTION_TOKEN .* is not set"):
        list(connector(notion.url, secrets={}).items())


def test_the_token_never_reaches_the_logs(notion, caplog):
    caplog.set_level(logging.DEBUG)
    conn = connector(notion.url)
    for item in conn.items():
        conn.fetch(item)
    notion.status_override = 401
    with pytest.raises(SourceError):
        list(conn.items())

    assert TOKEN not in caplog.text


def test_options_default_to_notions_api_and_refuse_a_pasted_token():
    assert NotionConnector.validate({"token_env": "NOTION_TOKEN"}) == {
        "base_url": "https://api.notion.com",
        "token_env": "NOTION_TOKEN",
    }
    with pytest.raises(OptionsError, match="not the token"):
        NotionConnector.validate({"token_env": "secret_abc-123"})
    with pytest.raises(OptionsError, match="needs the option 'token_env'"):
        NotionConnector.validate({"base_url": "https://api.notion.com"})
