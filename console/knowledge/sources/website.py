"""Website: the pages of a sitemap, or a crawl from a start URL within a URL prefix.

robots.txt is respected (and its Crawl-delay), requests are paced (SYNC_REQUESTS_PER_SECOND), a
page is read only up to MAX_UPLOAD_MB and its main text is taken with trafilatura as Markdown
(title and headings kept). From a sitemap, a page whose <lastmod> is unchanged is not requested at
all, and the others are asked for conditionally (If-None-Match / If-Modified-Since), so an
unchanged page costs a 304. A crawl must read each page to find its links; unchanged ones are
then not indexed again.
"""

from __future__ import annotations

import hashlib
import time
import urllib.robotparser
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import trafilatura
import urllib3
from django.conf import settings
from lxml import etree
from lxml import html as lxml_html

from console.knowledge.sources.base import (
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
    register,
)
from console.knowledge.sources.common import as_positive_int, max_item_bytes, too_large

MAX_REDIRECTS = 5
MAX_SITEMAPS = 50  # child sitemaps read from one sitemap index
HTML_TYPES = ("text/html", "application/xhtml+xml")
OTHER_TYPES = {"text/plain": "page.txt", "text/markdown": "page.md", "application/pdf": "page.pdf"}


class FetchError(Exception):
    """A request that gave no usable answer; the message is for a person."""


@dataclass(frozen=True)
class Response:
    url: str  # after redirects
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def _http_url(value: Any, name: str) -> str:
    if (
        not isinstance(value, str)
        or urlsplit(value).scheme not in ("http", "https")
        or not urlsplit(value).hostname
    ):
        raise OptionsError(f"The option {name!r} takes an http:// or https:// URL, not {value!r}.")
    if urlsplit(value).password or urlsplit(value).username:
        raise OptionsError(f"The option {name!r} must not hold a user name or password.")
    return urldefrag(value)[0]


class Http:
    """GET with a pace, a size limit and redirects followed by hand (same host, at most MAX_REDIRECTS)."""

    def __init__(self, *, per_second: float, max_bytes: int) -> None:
        self.pool = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(connect=settings.SYNC_HTTP_TIMEOUT, read=settings.SYNC_HTTP_TIMEOUT),
            headers={"User-Agent": settings.SYNC_USER_AGENT},
        )
        self.interval = 1 / per_second if per_second > 0 else 0.0
        self.max_bytes = max_bytes
        self._last = 0.0
        self.requests = 0

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        seen = {url}
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get_once(url, headers or {})
            location = response.headers.get("location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            target = urldefrag(urljoin(url, location))[0]
            if urlsplit(target).netloc != urlsplit(url).netloc:
                raise FetchError(f"{url} redirects to another site ({target}); it is not followed.")
            if target in seen:
                raise FetchError(f"{url} redirects in a loop (back to {target}).")
            seen.add(target)
            url = target
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times.")

    def _get_once(self, url: str, headers: Mapping[str, str]) -> Response:
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()
        self.requests += 1
        try:
            raw = self.pool.request("GET", url, headers=dict(headers), redirect=False, preload_content=False)
        except urllib3.exceptions.HTTPError as err:
            raise FetchError(f"{url} could not be reached ({_reason(err)}).") from err
        try:
            length = int(raw.headers.get("content-length") or 0)
            if length > self.max_bytes:
                raise FetchError(too_large(length))
            body = raw.read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                raise FetchError(too_large(len(body)) + " (or more)")
        except urllib3.exceptions.HTTPError as err:
            raise FetchError(f"{url} could not be read ({_reason(err)}).") from err
        finally:
            raw.release_conn()
        return Response(url, raw.status, {k.lower(): v for k, v in raw.headers.items()}, body)


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or err
    return str(reason).split(": ", 1)[-1][:200]


def _status_problem(response: Response, what: str) -> str:
    if response.status in (401, 403):
        return (
            f"{what} {response.url} answered {response.status} ({'login needed' if response.status == 401 else 'forbidden'}): "
            "a website source reads public pages; check the URL or allow the crawler."
        )
    return f"{what} {response.url} answered HTTP {response.status}."


def validators(headers: Mapping[str, str]) -> str:
    """The response's ETag or Last-Modified, as stored and sent back on the next conditional request."""
    if etag := headers.get("etag"):
        return f"etag:{etag}"
    if modified := headers.get("last-modified"):
        return f"modified:{modified}"
    return ""


def conditional_headers(previous_version: str) -> dict[str, str]:
    kind, _, value = previous_version.partition(":")
    if kind == "etag" and value:
        return {"If-None-Match": value}
    if kind == "modified" and value:
        return {"If-Modified-Since": value}
    return {}


def page_content(response: Response) -> Content:
    """A page as the parsers read it: HTML's main text as Markdown with its title; other types as they are."""
    kind = response.content_type
    if kind in OTHER_TYPES:
        return Content(filename=OTHER_TYPES[kind], data=response.body)
    if kind and kind not in HTML_TYPES:
        raise ItemError(f"{response.url} is {kind}, not a page: website sources read HTML, text and PDF.")
    head = response.body[:8192]
    if b"\0" in head or _mostly_binary(head):
        raise ItemError(f"{response.url} is served as HTML but is binary data; it was not read.")
    html = response.body.decode(_charset(response), "replace")
    markdown = trafilatura.extract(
        html, output_format="markdown", include_formatting=True, include_tables=True, include_comments=False
    )
    metadata = trafilatura.extract_metadata(html)
    title = (metadata.title if metadata else "") or ""
    if not markdown:
        return Content(filename="page.html", data=response.body, title=title)
    if title and not markdown.lstrip().startswith("# "):
        markdown = f"# {title}\n\n{markdown}"
    return Content(filename="page.md", data=markdown.encode(), title=title)


def _charset(response: Response) -> str:
    for part in response.headers.get("content-type", "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def _mostly_binary(data: bytes) -> bool:
    control = sum(1 for byte in data if byte < 9 or 13 < byte < 32)
    return bool(data) and control / len(data) > 0.05


@register
class WebsiteConnector(Connector):
    kind = "website"
    option_names = ("sitemap", "start_url", "prefix", "max_pages")

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        if bool(cleaned.get("sitemap")) == bool(cleaned.get("start_url")):
            raise OptionsError(
                "A website source needs either the option 'sitemap' or 'start_url' (one of them)."
            )
        for name in ("sitemap", "start_url", "prefix"):
            if cleaned.get(name):
                cleaned[name] = _http_url(cleaned[name], name)
        if cleaned.get("start_url") and not cleaned.get("prefix"):
            start = urlsplit(cleaned["start_url"])
            cleaned["prefix"] = f"{start.scheme}://{start.netloc}{start.path.rsplit('/', 1)[0]}/"
        cleaned["max_pages"] = as_positive_int(cleaned, "max_pages", settings.SYNC_MAX_PAGES, most=1_000_000)
        return cleaned

    def __init__(self, options: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> None:
        super().__init__(options, secrets)
        self.http = Http(per_second=settings.SYNC_REQUESTS_PER_SECOND, max_bytes=max_item_bytes())
        self._crawled: dict[str, Content | ItemError] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}

    # --- listing --------------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        entry = self.options.get("sitemap") or self.options["start_url"]
        self._check_robots(entry)
        if self.options.get("sitemap"):
            yield from self._sitemap_items()
        else:
            yield from self._crawl()

    def _allowed(self, url: str) -> bool:
        prefix = self.options.get("prefix") or ""
        return url.startswith(prefix) and self._robots_for(url).can_fetch(settings.SYNC_USER_AGENT, url)

    def _check_robots(self, url: str) -> None:
        if not self._robots_for(url).can_fetch(settings.SYNC_USER_AGENT, url):
            raise SourceError(f"robots.txt of {urlsplit(url).netloc} does not allow {url}: nothing was read.")

    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        site = f"{parts.scheme}://{parts.netloc}"
        if site in self._robots:
            return self._robots[site]
        parser = urllib.robotparser.RobotFileParser(f"{site}/robots.txt")
        try:
            response = self.http.get(f"{site}/robots.txt")
        except FetchError as err:
            raise SourceError(f"robots.txt could not be read: {err}") from err
        if response.status >= 500:
            raise SourceError(f"robots.txt of {site} answered HTTP {response.status}: try again later.")
        if response.status in (401, 403):  # as RFC 9309 says: a robots.txt behind a login forbids all
            parser.parse(["User-agent: *", "Disallow: /"])
        elif response.status == 200:
            parser.parse(response.body.decode("utf-8", "replace").splitlines())
        else:  # none (404): everything is allowed
            parser.parse([])
        delay = parser.crawl_delay(settings.SYNC_USER_AGENT)
        if delay:
            self.http.interval = max(self.http.interval, float(delay))
        self._robots[site] = parser
        return parser

    def _get_listing(self, url: str, what: str) -> Response:
        try:
            response = self.http.get(url)
        except FetchError as err:
            raise SourceError(f"{what} {err}") from err
        if response.status != 200:
            raise SourceError(_status_problem(response, what))
        return response

    def _sitemap_items(self) -> Iterator[Item]:
        seen: set[str] = set()
        limit = self.options["max_pages"]
        for url, lastmod in self._sitemap_entries(self.options["sitemap"], depth=0):
            url = urldefrag(url)[0]
            if url in seen or not self._allowed(url):
                continue
            seen.add(url)
            yield Item(key=url, version=f"lastmod:{lastmod}" if lastmod else "", url=url)
            if len(seen) >= limit:
                return

    def _sitemap_entries(self, url: str, depth: int) -> Iterator[tuple[str, str]]:
        root = _parse_xml(self._get_listing(url, "The sitemap").body, url)
        name = etree.QName(root).localname
        if name == "sitemapindex" and depth == 0:
            children = [_text(node, "loc") for node in root if etree.QName(node).localname == "sitemap"]
            for child in [c for c in children if c][:MAX_SITEMAPS]:
                yield from self._sitemap_entries(urljoin(url, child), depth=1)
            return
        if name != "urlset":
            raise SourceError(f"{url} is not a sitemap (its root element is <{name}>, not <urlset>).")
        for node in root:
            if etree.QName(node).localname == "url" and (loc := _text(node, "loc")):
                yield urljoin(url, loc), _text(node, "lastmod")

    def _crawl(self) -> Iterator[Item]:
        start = self.options["start_url"]
        limit = self.options["max_pages"]
        queue, seen = deque([start]), {start}
        first = True
        while queue and len(self._crawled) < limit:
            url = queue.popleft()
            try:
                response = self.http.get(url)
            except FetchError as err:
                if first:
                    raise SourceError(f"The start page {err}") from err
                self._crawled[url] = ItemError(str(err))
            else:
                if first and response.status != 200:
                    raise SourceError(_status_problem(response, "The start page"))
                self._crawled[url] = self._read_crawled(response)
                for link in _links(response):
                    if link not in seen and self._allowed(link):
                        seen.add(link)
                        queue.append(link)
            first = False
            found = self._crawled[url]
            version = hashlib.sha256(found.data).hexdigest()[:32] if isinstance(found, Content) else ""
            yield Item(key=url, version=version, url=url)

    def _read_crawled(self, response: Response) -> Content | ItemError:
        if response.status != 200:
            return ItemError(_status_problem(response, "The page"))
        try:
            return page_content(response)
        except ItemError as err:
            return err

    # --- fetching -------------------------------------------------------------------------
    def fetch(self, item: Item, previous_version: str = "") -> Content:
        if item.key in self._crawled:  # read while crawling
            found = self._crawled[item.key]
            if isinstance(found, ItemError):
                raise found
            return found
        try:
            response = self.http.get(item.key, conditional_headers(previous_version))
        except FetchError as err:
            raise ItemError(str(err)) from err
        if response.status == 304:
            return Content(filename="", data=b"", unchanged=True)
        if response.status != 200:
            raise ItemError(_status_problem(response, "The page"))
        content = page_content(response)
        # A listed <lastmod> is the version to keep; otherwise the validators ask next time.
        version = "" if item.version else validators(response.headers)
        return Content(filename=content.filename, data=content.data, title=content.title, version=version)


def _parse_xml(data: bytes, url: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as err:
        raise SourceError(f"The sitemap {url} is not well-formed XML ({err}).") from err
    if root is None:
        raise SourceError(f"The sitemap {url} is empty.")
    return root


def _text(node: etree._Element, name: str) -> str:
    for child in node:
        if etree.QName(child).localname == name:
            return (child.text or "").strip()
    return ""


def _links(response: Response) -> list[str]:
    if response.status != 200 or response.content_type not in HTML_TYPES or b"\0" in response.body[:8192]:
        return []
    try:
        tree = lxml_html.fromstring(response.body)
    except (etree.ParserError, ValueError):
        return []
    links = []
    for href in tree.xpath("//a/@href"):
        url = urldefrag(urljoin(response.url, str(href).strip()))[0]
        if urlsplit(url).scheme in ("http", "https"):
            links.append(url)
    return links
