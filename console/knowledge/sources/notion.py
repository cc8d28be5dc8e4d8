"""Notion: the pages and databases shared with an integration, through notion-client.

Listing is Notion's search (everything shared with the integration), plus a query of each data
source (database) it finds, so every row is listed even where search leaves some out; the version
is the page's last_edited_time (which Notion rounds to the minute). Fetching renders the page's
blocks, and a row's properties, as Markdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import httpx
from notion_client import Client
from notion_client.errors import HTTPResponseError, NotionClientErrorBase
from notion_client.helpers import iterate_paginated_api

from console.knowledge.sources.base import (
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
    register,
)
from console.knowledge.sources.hosted import (
    check_env_name,
    check_http_url,
    network_reason,
    server_text,
    token_from,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.notion.com"
TIMEOUT_MS = 30_000
PAGE_SIZE = 100
# A page is read block by block; past these it is an error, not an endless walk.
MAX_BLOCKS = 5_000
MAX_DEPTH = 8


@register
class NotionConnector(Connector):
    """Pages and database rows shared with the integration whose token `$token_env` holds."""

    kind = "notion"
    option_names = ("base_url", "token_env")
    required = ("token_env",)

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        cleaned["base_url"] = check_http_url(
            cls.kind, "base_url", cleaned.get("base_url") or DEFAULT_BASE_URL
        )
        cleaned["base_url"] = cleaned["base_url"].removesuffix("/v1")
        cleaned["token_env"] = check_env_name(cls.kind, "token_env", cleaned["token_env"])
        if not cleaned["token_env"]:
            raise OptionsError("A notion source needs the option 'token_env'.")
        return cleaned

    # --- listing and fetching ---------------------------------------------------------------

    def items(self) -> Iterator[Item]:
        client = self._client()
        seen: set[str] = set()
        sources: list[str] = []
        for found in self._paginate(client.search, "searching what is shared with the integration"):
            if found.get("object") == "data_source":
                sources.append(str(found["id"]))
            elif found.get("object") == "page" and found.get("id") not in seen:
                seen.add(found["id"])
                yield from _listed(found)
        for source in sources:
            rows = self._paginate(
                client.data_sources.query, f"reading the database {source}", data_source_id=source
            )
            for row in rows:
                if row.get("object") == "page" and row.get("id") not in seen:
                    seen.add(row["id"])
                    yield from _listed(row)

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        try:
            client = self._client()
        except SourceError as err:
            raise ItemError(str(err)) from None
        try:
            page: dict[str, Any] = client.pages.retrieve(page_id=item.key)  # type: ignore[assignment]
            reader = _BlockReader(client)
            lines = _properties(page.get("properties") or {}) + reader.render(item.key, 0)
        except (NotionClientErrorBase, httpx.HTTPError, ValueError) as err:
            raise ItemError(
                f"Notion could not send the page {item.title or item.key}: {self._reason(err)}"
            ) from None
        title = _title(page) or item.title or "Untitled"
        front = "---\ntitle: " + " ".join(title.split()).replace('"', "'") + "\n---\n\n"
        return Content(filename="page.md", data=(front + "\n\n".join(lines) + "\n").encode(), title=title)

    # --- the client and its errors ----------------------------------------------------------

    def _client(self) -> Client:
        token = token_from("Notion", self.secrets, self.options["token_env"])
        return Client(
            auth=token,
            base_url=self.options.get("base_url") or DEFAULT_BASE_URL,
            timeout_ms=TIMEOUT_MS,
            # Our own logger: notion-client's default adds a console handler per client.
            logger=logging.getLogger(f"{__name__}.client"),
        )

    def _paginate(self, endpoint: Callable[..., Any], doing: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            for result in iterate_paginated_api(endpoint, page_size=PAGE_SIZE, **kwargs):
                if not isinstance(result, dict):
                    raise ValueError("a result that is not an object")
                yield result
        except (NotionClientErrorBase, httpx.HTTPError, ValueError, TypeError, AttributeError) as err:
            self._listing_failed(err, doing)

    def _reason(self, err: BaseException) -> str:
        if isinstance(err, HTTPResponseError):
            said = server_text(err, self.secrets)
            return f"{err.status} {said}".strip()
        if isinstance(err, httpx.HTTPError | NotionClientErrorBase):
            return network_reason(err)
        return "its answer was not the JSON Notion sends"

    def _listing_failed(self, err: BaseException, doing: str) -> NoReturn:
        if isinstance(err, HTTPResponseError) and err.status in (401, 403):
            raise SourceError(
                f"Notion refused the token in ${self.options['token_env']} ({err.status}) while {doing}: "
                f"{server_text(err, self.secrets)} Check the integration's token and that the pages are "
                "shared with it (Connections in the page's ⋯ menu)."
            ) from None
        if isinstance(err, HTTPResponseError):
            said = server_text(err, self.secrets)
            raise SourceError(
                f"Notion answered {err.status} while {doing}{': ' + said if said else '.'} Try again later."
            ) from None
        if isinstance(err, httpx.HTTPError | NotionClientErrorBase):
            raise SourceError(
                f"Could not reach Notion at {self.options.get('base_url') or DEFAULT_BASE_URL} while {doing} "
                f"({network_reason(err)}): check base_url and the network."
            ) from None
        raise SourceError(
            f"Notion at {self.options.get('base_url') or DEFAULT_BASE_URL} did not answer like Notion's API "
            f"while {doing}: check base_url."
        ) from None


def _listed(page: Mapping[str, Any]) -> Iterator[Item]:
    """The page as an item, unless it is in the trash."""
    if page.get("archived") or page.get("in_trash"):
        return
    yield Item(
        key=str(page["id"]),
        version=str(page.get("last_edited_time") or ""),
        title=_title(page),
        url=str(page.get("url") or ""),
    )


def _title(page: Mapping[str, Any]) -> str:
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return _plain(prop.get("title") or [])
    return ""


# --- blocks to Markdown ------------------------------------------------------------------------


def _plain(rich: list[dict[str, Any]]) -> str:
    return "".join(str(part.get("plain_text") or "") for part in rich)


def _rich(rich: list[dict[str, Any]]) -> str:
    """Rich text as Markdown: links and inline code kept, other annotations dropped."""
    out = []
    for part in rich:
        text = str(part.get("plain_text") or "")
        if (part.get("annotations") or {}).get("code") and text:
            text = f"`{text}`"
        href = part.get("href")
        if href and href != text:
            text = f"[{text}]({href})"
        out.append(text)
    return "".join(out)


def _properties(properties: Mapping[str, Any]) -> list[str]:
    """A database row's properties other than its title, one "- **Name**: value" line each."""
    lines = []
    for name, prop in properties.items():
        value = _property_value(prop) if isinstance(prop, dict) else ""
        if value:
            lines.append(f"- **{name}**: {value}")
    return ["\n".join(lines)] if lines else []


def _property_value(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    value = prop.get(kind) if isinstance(kind, str) else None
    if kind == "rich_text":
        return _rich(value or [])
    if kind in ("select", "status"):
        return str((value or {}).get("name") or "")
    if kind == "multi_select":
        return ", ".join(str(option.get("name") or "") for option in value or [])
    if kind == "date":
        return " → ".join(str(v) for v in ((value or {}).get("start"), (value or {}).get("end")) if v)
    if kind == "checkbox":
        return "yes" if value else "no"
    if kind in ("number", "url", "email", "phone_number"):
        return "" if value is None else str(value)
    if kind == "people":
        return ", ".join(str(person.get("name") or "") for person in value or [] if person.get("name"))
    return ""


_LIST_ITEMS = {"bulleted_list_item": "- ", "numbered_list_item": "1. ", "to_do": "- [ ] ", "toggle": "- "}
_HEADINGS = {"heading_1": "# ", "heading_2": "## ", "heading_3": "### "}
_SKIPPED = {"child_page", "child_database", "unsupported", "breadcrumb", "table_of_contents"}


class _BlockReader:
    """Reads a page's block tree (children listed page by page) into Markdown paragraphs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.count = 0

    def children(self, block_id: str) -> list[dict[str, Any]]:
        blocks = []
        for block in iterate_paginated_api(
            self.client.blocks.children.list, block_id=block_id, page_size=PAGE_SIZE
        ):
            self.count += 1
            if self.count > MAX_BLOCKS:
                raise ItemError(f"The page has more than {MAX_BLOCKS} blocks: split it into smaller pages.")
            blocks.append(block)
        return blocks

    def render(self, block_id: str, depth: int, indent: str = "") -> list[str]:
        """Paragraphs of Markdown; list items nest under their parent by indentation."""
        if depth > MAX_DEPTH:
            return []
        paragraphs: list[str] = []
        for block in self.children(block_id):
            kind = str(block.get("type") or "")
            if kind in _SKIPPED:
                continue
            text, nested_indent = self._block(block, kind, indent)
            nested = (
                self.render(block["id"], depth + 1, nested_indent)
                if block.get("has_children") and kind != "table"
                else []
            )
            if kind in _LIST_ITEMS and paragraphs and _is_list_line(paragraphs[-1]):
                paragraphs[-1] += "\n" + text  # consecutive items: one list
            elif text:
                paragraphs.append(text)
            if nested and kind in _LIST_ITEMS:
                paragraphs[-1] += "\n" + "\n".join(nested)
            else:
                paragraphs.extend(nested)
        return paragraphs

    def _block(self, block: Mapping[str, Any], kind: str, indent: str) -> tuple[str, str]:
        data = block.get(kind) or {}
        text = _rich(data.get("rich_text") or [])
        if kind in _LIST_ITEMS:
            marker = "- [x] " if kind == "to_do" and data.get("checked") else _LIST_ITEMS[kind]
            return indent + marker + text, indent + "  "
        if kind in _HEADINGS:
            return _HEADINGS[kind] + _plain(data.get("rich_text") or []), indent
        if kind in ("quote", "callout"):
            return "\n".join("> " + line for line in text.split("\n")), indent
        if kind == "code":
            language = str(data.get("language") or "").replace("plain text", "")
            return f"```{language}\n{_plain(data.get('rich_text') or [])}\n```", indent
        if kind == "divider":
            return "---", indent
        if kind == "equation":
            return str(data.get("expression") or ""), indent
        if kind == "table":
            return self._table(block), indent
        if kind in ("bookmark", "embed", "link_preview"):
            caption = _plain(data.get("caption") or [])
            return (f"{caption} ({data.get('url')})" if caption else str(data.get("url") or "")), indent
        if kind in ("image", "file", "pdf", "video", "audio"):
            return _plain(data.get("caption") or []), indent
        return text, indent  # paragraph, and kinds whose text is all they say

    def _table(self, block: Mapping[str, Any]) -> str:
        rows = [
            [
                _rich(cell).replace("|", "\\|").replace("\n", " ")
                for cell in (row.get("table_row") or {}).get("cells", [])
            ]
            for row in self.children(block["id"])
            if row.get("type") == "table_row"
        ]
        if not rows:
            return ""
        width = max(len(row) for row in rows)
        rows = [row + [""] * (width - len(row)) for row in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)


def _is_list_line(paragraph: str) -> bool:
    last = paragraph.rsplit("\n", 1)[-1].lstrip()
    return last.startswith(("- ", "1. "))
