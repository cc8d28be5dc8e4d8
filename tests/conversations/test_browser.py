"""End to end in a real browser: log in, ask on the chat page, watch the answer stream in, read it, vote 👍.

Debian's chromium driven by Playwright (never `playwright install`: no browser downloads).
The database is only touched outside the Playwright block: its sync API runs an event loop in
this thread, and Django refuses database calls from a thread with a running loop.
"""

from pathlib import Path

import pytest

from console.conversations.models import Answer, Feedback
from console.conversations.pseudonyms import hash_id
from tests.conversations.conftest import ONCALL_QUESTION

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
# Counts the draft cards the page inserts while an answer streams in.
COUNT_DRAFTS = """
window.drafts = 0;
new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(node => {
  if (node.classList && node.classList.contains("draft")) window.drafts += 1;
}))).observe(document, {childList: true, subtree: true});
"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium chromium-driver"
)


def test_ask_read_the_sources_and_vote_in_a_real_browser(live_server, handbook, django_user_model, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    user = django_user_model.objects.create_superuser("curator", "curator@example.com", PASSWORD)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(30_000)
        page.add_init_script(COUNT_DRAFTS)
        page.goto(f"{live_server.url}/chat/")
        page.fill("#id_username", "curator")  # redirected to the admin login form
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/chat/")

        page.fill("#id_question", ONCALL_QUESTION)
        with page.expect_response(lambda r: r.request.method == "POST" and "/ask" in r.url) as asked:
            page.click("#ask-button")
        assert asked.value.headers["content-type"] == "application/x-ndjson"
        card = page.locator("#answers article.answer:not(.draft)").first
        expect(card.locator(".question")).to_have_text(ONCALL_QUESTION)
        expect(card.locator(".sources li").first).to_contain_text("On-call rotation")
        expect(card.locator(".badge.mode")).to_have_text("rag")
        expect(page.locator("#working")).to_be_hidden()
        expect(page.locator("#id_question")).to_have_value("")
        expect(page.locator("#clear-form")).to_be_visible()
        expect(page.locator("article.draft")).to_have_count(0)  # the streamed draft gave way to the card
        assert page.evaluate("window.drafts") == 1
        page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

        card.locator("button.vote-up").click()
        expect(page.locator("#answers article.answer button.vote-up.chosen")).to_contain_text("1")
        browser.close()

    answer = Answer.objects.get()
    assert (answer.platform, answer.question) == ("web", ONCALL_QUESTION)
    vote = Feedback.objects.get()
    assert (vote.answer, vote.value, vote.platform) == (answer, 1, "web")
    assert vote.voter == hash_id("web", str(user.pk))
