"""The Confluence connector, with the real atlassian-python-api client against a local Confluence."""

from __future__ import annotations

import logging

import pytest

from console.knowledge.sources.base import CONNECTORS, ItemError, OptionsError, SourceError
from console.knowledge.sources.confluence import ConfluenceConnector
from ml.parsing import parse_document
from tests.knowledge.api_fakes import FakeConfluence, Page, closed_port_url

TOKEN = "conf-secret-token"


@pytest.fixture
def wiki():
    fake = FakeConfluence(token=TOKEN, page_size=2)
    fake.add_page(Page("101", "ENG", "On-call", "<p>The primary is paged through PagerDuty.</p>"))
    fake.add_page(Page("102", "ENG", "Deploys", "<h2>Friday</h2><p>No deploys after 15:00 on Fridays.</p>"))
    fake.add_page(
        Page(
            "103",
            "ENG",
            "Backups",
            "<p>storage</p>",
            rendered="<h2>Schedule</h2><p>Backups run nightly at 02:00 UTC.</p>",
        )
    )
    fake.add_page(Page("201", "OPS", "VPN", "<p>Install WireGuard from the portal.</p>"))
    yield fake
    fake.close()


def connector(
    url: str, spaces: str = "ENG,OPS", secrets: dict | None = None, **options
) -> ConfluenceConnector:
    cleaned = ConfluenceConnector.validate(
        {"base_url": url, "spaces": spaces, "token_env": "CONFLUENCE_TOKEN", **options}
    )
    return ConfluenceConnector(cleaned, {"CONFLUENCE_TOKEN": TOKEN} if secrets is None else secrets)


def listing(conn: ConfluenceConnector) -> dict:
    return {item.key: item for item in conn.items()}


def test_registered_under_its_kind():
    assert CONNECTORS["confluence"] is ConfluenceConnector


def test_lists_every_page_of_each_space_across_listing_pages(wiki):
    items = listing(connector(wiki.url))

    assert set(items) == {"101", "102", "103", "201"}
    assert items["102"].version == "1"
    assert items["102"].title == "Deploys"
    assert items["102"].url == f"{wiki.url}/spaces/ENG/pages/102"
    # ENG's three pages come two per answer: the client followed _links.next.
    assert wiki.paths().count("/rest/api/content") == 3
    assert all(
        "body" not in r.query.get("expand", "") for r in wiki.requests if r.path == "/rest/api/content"
    )


def test_fetch_gives_the_page_as_html_that_parses_to_its_text(wiki):
    conn = connector(wiki.url)
    item = listing(conn)["102"]

    content = conn.fetch(item)

    assert content.filename == "page.html" and content.title == "Deploys"
    parsed = parse_document(content.filename, content.data)
    assert parsed.title == "Deploys"
    assert "No deploys after 15:00 on Fridays." in " ".join(s.text for s in parsed.sections)


def test_fetch_prefers_the_rendered_body(wiki):
    conn = connector(wiki.url)
    content = conn.fetch(listing(conn)["103"])

    assert b"Backups run nightly at 02:00 UTC." in content.data
    assert b"<p>storage</p>" not in content.data


def test_code_macros_in_storage_format_keep_their_text(wiki):
    wiki.add_page(
        Page(
            "104",
            "ENG",
            "Rollback",
            '<p>Run:</p><ac:structured-macro ac:name="code"><ac:plain-text-body>'
            "<![CDATA[kubectl rollout undo deploy/api]]></ac:plain-text-body></ac:structured-macro>",
        )
    )
    conn = connector(wiki.url)
    parsed = parse_document("page.html", conn.fetch(listing(conn)["104"]).data)

    assert "kubectl rollout undo deploy/api" in " ".join(s.text for s in parsed.sections)


def test_an_edit_changes_the_version_and_a_deletion_drops_the_item(wiki):
    conn = connector(wiki.url)
    before = listing(conn)

    wiki.edit("101", "<p>The secondary is paged after 15 minutes.</p>")
    del wiki.pages["201"]
    after = listing(conn)

    assert after["101"].version == "2" != before["101"].version
    assert after["102"].version == before["102"].version
    assert "201" not in after
    assert b"secondary is paged" in conn.fetch(after["101"]).data


def test_a_page_gone_between_listing_and_fetch_is_an_item_error(wiki):
    conn = connector(wiki.url)
    item = listing(conn)["101"]
    del wiki.pages["101"]

    with pytest.raises(ItemError, match="no page 101"):
        conn.fetch(item)


def test_a_refused_token_is_a_source_error_that_names_the_variable_not_the_token(wiki):
    conn = connector(wiki.url, secrets={"CONFLUENCE_TOKEN": "wrong-token-value"})

    with pytest.raises(SourceError) as refused:
        list(conn.items())

    message = str(refused.value)
    assert "Confluence refused the token in $CONFLUENCE_TOKEN (401)" in message
    assert "wrong-token-value" not in message


def test_forbidden_is_a_source_error(wiki):
    wiki.status_override = 403

    with pytest.raises(SourceError, match=r"refused the token in \$CONFLUENCE_TOKEN \(403\)"):
        list(connector(wiki.url).items())


def test_an_unknown_space_is_a_source_error_not_an_empty_listing(wiki):
    with pytest.raises(SourceError, match="no space NOPE"):
        list(connector(wiki.url, spaces="ENG,NOPE").items())


def test_an_unreachable_host_is_a_source_error():
    url = closed_port_url()
    with pytest.raises(SourceError, match=f"Could not reach Confluence at {url}"):
        list(connector(url).items())


def test_a_server_error_while_listing_is_a_source_error(wiki):
    wiki.status_override = 500

    with pytest.raises(SourceError, match="answered 500"):
        list(connector(wiki.url).items())


def test_a_sign_in_page_instead_of_the_api_is_a_source_error(wiki):
    wiki.login_page = True

    with pytest.raises(SourceError, match="did not answer with its REST API"):
        list(connector(wiki.url).items())


def test_a_missing_token_variable_is_a_source_error_naming_it(wiki):
    with pytest.raises(SourceError, match=r"\$CONFLUENCE_TOKEN .* is not set"):
        list(connector(wiki.url, secrets={}).items())


def test_the_token_never_reaches_the_logs(wiki, caplog):
    caplog.set_level(logging.DEBUG)
    conn = connector(wiki.url)
    for item in conn.items():
        conn.fetch(item)

    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"spaces": "ENG"}, "needs the option 'base_url'"),
        ({"base_url": "wiki.example.com", "spaces": "ENG"}, "must be an http"),
        ({"base_url": "https://user:pw@wiki.example.com", "spaces": "ENG"}, "must not carry credentials"),
        ({"base_url": "https://wiki.example.com", "spaces": "ENG, bad key"}, "space keys"),
        (
            {"base_url": "https://wiki.example.com", "spaces": "ENG", "token_env": "abc def=="},
            "not the token",
        ),
        (
            {"base_url": "https://wiki.example.com", "spaces": "ENG", "colour": "red"},
            "Unknown option 'colour'",
        ),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(options, complaint):
    with pytest.raises(OptionsError, match=complaint):
        ConfluenceConnector.validate(options)


def test_options_are_cleaned():
    cleaned = ConfluenceConnector.validate(
        {"base_url": "https://wiki.example.com/", "spaces": " ENG , OPS,ENG ", "token_env": "$CONF_TOKEN"}
    )
    assert cleaned == {
        "base_url": "https://wiki.example.com",
        "spaces": "ENG,OPS",
        "token_env": "CONF_TOKEN",
        "username": "",
    }
