"""A website source against a local HTTP server: sitemap, robots.txt, ETags and a page that later
disappears; and the bad inputs (401, unreachable, malformed XML, redirect loop, endless crawl, huge
page, binary served as HTML)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.knowledge import syncing
from console.knowledge.models import Document, Source, Sync
from console.knowledge.search import search
from console.knowledge.sources import OptionsError
from console.knowledge.sources.website import WebsiteConnector

pytestmark = pytest.mark.django_db


def page(title: str, body: str, links: tuple[str, ...] = ()) -> bytes:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    paragraph = f"<p>{body} " * 4 + "</p>"
    return (
        f"<html><head><title>{title}</title></head><body><nav>Home · About</nav><main><h1>{title}</h1>"
        f"{paragraph}<h2>Details</h2>{paragraph}{anchors}</main><footer>© Northwind</footer></body></html>"
    ).encode()


class Site:
    """Pages by path: (status, headers, body). Records every request as (path, request headers)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = ""

    def html(self, path: str, body: bytes, **headers: str) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:12] + '"'
        self.pages[path] = (200, {"Content-Type": "text/html; charset=utf-8", "ETag": etag, **headers}, body)

    def sitemap(self, *paths: str, lastmod: str = "") -> None:
        entries = "".join(
            f"<url><loc>{self.url}{p}</loc>{f'<lastmod>{lastmod}</lastmod>' if lastmod else ''}</url>"
            for p in paths
        )
        xml = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
        self.pages["/sitemap.xml"] = (200, {"Content-Type": "application/xml"}, xml.encode())

    def pages_requested(self) -> list[str]:
        return [path for path, _ in self.requests if path not in ("/robots.txt", "/sitemap.xml")]


@pytest.fixture
def site(settings) -> Iterator[Site]:
    settings.SYNC_REQUESTS_PER_SECOND = 0
    settings.SYNC_HTTP_TIMEOUT = 5
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, dict(self.headers)))
            status, headers, body = state.pages.get(
                self.path, (404, {"Content-Type": "text/plain"}, b"not found")
            )
            if status == 200 and headers.get("ETag") and self.headers.get("If-None-Match") == headers["ETag"]:
                status, body = 304, b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.pages["/robots.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        b"User-agent: *\nDisallow: /private/\n",
    )
    state.html("/docs/deploy", page("Deploy guide", "We deploy on Tuesdays with the release train."))
    state.html(
        "/docs/oncall", page("On-call", "The on-call engineer acknowledges pages within five minutes.")
    )
    state.html("/docs/expenses", page("Expenses", "Meals while travelling are reimbursed up to sixty euros."))
    state.html("/private/salaries", page("Salaries", "Secret figures."))
    state.sitemap("/docs/deploy", "/docs/oncall", "/docs/expenses", "/private/salaries")
    yield state
    server.shutdown()
    server.server_close()


def website(collection, **options) -> Source:
    return Source.objects.create(name="site", kind="website", collection=collection, options=options)


def sync(source: Source, **kwargs) -> Sync:
    result = syncing.sync_source(source.pk, **kwargs).sync
    source.refresh_from_db()
    return result


def test_sitemap_first_sync_respects_robots_and_keeps_urls(site, collection):
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    result = sync(source)
    assert (result.status, result.listed, result.added) == ("ok", 3, 3), result.error
    assert "/private/salaries" not in site.pages_requested()
    deploy = Document.objects.get(item_key=f"{site.url}/docs/deploy")
    assert deploy.title == "Deploy guide" and deploy.url == f"{site.url}/docs/deploy"
    assert deploy.item_version.startswith("etag:")
    hit = search("which day do we deploy", k=1, collections=["handbook"])[0]
    assert hit.source == f"{site.url}/docs/deploy"  # answers link the page
    assert "Home · About" not in " ".join(deploy.chunks.values_list("text", flat=True))  # main text only


def test_unchanged_pages_cost_a_304_and_are_not_indexed_again(site, collection):
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    sync(source)
    site.requests.clear()
    result = sync(source)
    assert (result.added, result.updated, result.unchanged) == (0, 0, 3)
    conditional = [
        headers.get("If-None-Match") for path, headers in site.requests if path.startswith("/docs/")
    ]
    assert len(conditional) == 3 and all(conditional)


def test_a_sitemap_lastmod_unchanged_means_no_page_request(site, collection):
    site.sitemap("/docs/deploy", "/docs/oncall", lastmod="2026-01-01")
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    sync(source)
    site.requests.clear()
    result = sync(source)
    assert result.unchanged == 2 and site.pages_requested() == []
    site.html("/docs/oncall", page("On-call", "The on-call engineer acknowledges pages within ten minutes."))
    site.sitemap("/docs/deploy", "/docs/oncall", lastmod="2026-02-01")
    result = sync(source)
    assert (result.updated, result.unchanged) == (1, 1)  # deploy's 200 had the same text


def test_a_changed_page_is_updated_and_a_vanished_page_deleted(site, collection):
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    sync(source)
    site.html("/docs/deploy", page("Deploy guide", "We deploy on Thursdays now, after the freeze."))
    site.sitemap("/docs/deploy", "/docs/oncall")
    result = sync(source)
    assert (result.status, result.updated, result.unchanged, result.deleted) == ("ok", 1, 1, 1)
    assert not Document.objects.filter(item_key=f"{site.url}/docs/expenses").exists()
    text = " ".join(
        Document.objects.get(item_key=f"{site.url}/docs/deploy").chunks.values_list("text", flat=True)
    )
    assert "Thursdays" in text


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ({"/sitemap.xml": (500, {}, b"oops")}, "HTTP 500"),
        ({"/sitemap.xml": (401, {"WWW-Authenticate": "Basic"}, b"")}, "401"),
        ({"/sitemap.xml": (403, {}, b"")}, "403"),
        (
            {"/sitemap.xml": (200, {"Content-Type": "application/xml"}, b"<urlset><url><loc>x</url>")},
            "well-formed",
        ),
        (
            {"/sitemap.xml": (200, {"Content-Type": "application/xml"}, b"<html><body/></html>")},
            "not a sitemap",
        ),
    ],
)
def test_a_failed_listing_prunes_nothing(site, collection, breakage, message):
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    sync(source)
    site.pages.update(breakage)
    result = sync(source)
    assert result.status == "failed" and message in result.error
    assert source.status == Source.Status.FAILED
    assert Document.objects.filter(source_ref=source, status="indexed").count() == 3


def test_an_unreachable_host_is_a_clear_error(collection, settings):
    settings.SYNC_HTTP_TIMEOUT = 2
    source = website(collection, sitemap="http://127.0.0.1:9/sitemap.xml")
    result = sync(source)
    assert result.status == "failed" and "could not be reached" in result.error


def test_bad_pages_fail_alone_with_reasons(site, collection, settings):
    settings.MAX_UPLOAD_MB = 0.05
    site.pages["/docs/loop"] = (302, {"Location": "/docs/loop2"}, b"")
    site.pages["/docs/loop2"] = (302, {"Location": "/docs/loop"}, b"")
    site.pages["/docs/huge"] = (200, {"Content-Type": "text/html"}, b"<p>" + b"a" * 100_000)
    site.pages["/docs/binary"] = (200, {"Content-Type": "text/html"}, bytes(range(256)) * 40)
    site.pages["/docs/image"] = (200, {"Content-Type": "image/png"}, b"\x89PNG")
    site.sitemap("/docs/deploy", "/docs/loop", "/docs/huge", "/docs/binary", "/docs/image")
    source = website(collection, sitemap=f"{site.url}/sitemap.xml")
    result = sync(source)
    assert (result.status, result.added, result.failed) == ("flagged", 1, 4)
    errors = {d.item_key.rsplit("/", 1)[1]: d.error for d in Document.objects.filter(status="failed")}
    assert "loop" in errors["loop"]
    assert "MAX_UPLOAD_MB" in errors["huge"]
    assert "binary" in errors["binary"]
    assert "image/png" in errors["image"]


def test_a_crawl_stays_within_its_prefix_and_page_limit(site, collection):
    links = tuple(f"/docs/endless/{n}" for n in range(1, 3))
    site.html(
        "/docs/start", page("Start", "The start of the handbook.", ("/docs/deploy", "/elsewhere", *links))
    )
    for n in range(1, 200):  # every page links to two new ones: an endless site
        site.html(
            f"/docs/endless/{n}",
            page(
                f"Page {n}",
                f"Page number {n} of the endless part.",
                (f"/docs/endless/{2 * n}", f"/docs/endless/{2 * n + 1}"),
            ),
        )
    source = website(collection, start_url=f"{site.url}/docs/start", max_pages=6)
    result = sync(source)
    assert (result.status, result.listed, result.added) == ("ok", 6, 6), result.error
    assert "/elsewhere" not in site.pages_requested()
    assert len(site.pages_requested()) == 6
    site.requests.clear()
    result = sync(source)
    assert (result.unchanged, result.updated) == (6, 0)  # a crawl reads pages to find links, indexes none


def test_robots_may_forbid_the_whole_site(site, collection):
    site.pages["/robots.txt"] = (200, {}, b"User-agent: *\nDisallow: /\n")
    result = sync(website(collection, sitemap=f"{site.url}/sitemap.xml"))
    assert result.status == "failed" and "robots.txt" in result.error


def test_options_are_checked():
    with pytest.raises(OptionsError, match="either"):
        WebsiteConnector.validate({})
    with pytest.raises(OptionsError, match="http"):
        WebsiteConnector.validate({"start_url": "file:///etc/passwd"})
    with pytest.raises(OptionsError, match="max_pages"):
        WebsiteConnector.validate({"start_url": "https://example.com/docs/", "max_pages": "lots"})
    assert WebsiteConnector.validate({"start_url": "https://example.com/docs/index.html"})["prefix"] == (
        "https://example.com/docs/"
    )
