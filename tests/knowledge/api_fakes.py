"""Small local stand-ins for Confluence's and Notion's REST APIs, for the connector tests.

Each is a real HTTP server on 127.0.0.1 (its own thread) that answers the endpoints the real
client library calls (atlassian-python-api, notion-client) with the JSON shapes the real services
send, checks the bearer token, pages its listings, and records every request.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused): an unreachable host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class JsonServer:
    """Routes each request to `answer(request)` -> (status, body, headers); body dict -> JSON."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[Request] = []
        self.status_override: int | None = None  # every request answered with this status
        self.login_page = False  # every request answered 200 with an HTML page (an SSO proxy)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self, method: str = "GET") -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.method == method]

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                request = Request(
                    method=method,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
                with fake._lock:
                    fake.requests.append(request)
                if fake.login_page:
                    status, body, headers = 200, "<!doctype html><html><form>Sign in</form></html>", {}
                else:
                    status, body, headers = fake.answer(request)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                content_type = "text/html" if isinstance(body, str) else "application/json"
                self.send_header("Content-Type", headers.pop("Content-Type", content_type))
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        return Handler


# --- Confluence ---------------------------------------------------------------------------------


@dataclass
class Page:
    id: str
    space: str
    title: str
    body: str  # storage format (XHTML)
    version: int = 1
    rendered: str | None = None  # export_view; None: the server omits it


class FakeConfluence(JsonServer):
    """Confluence Data Center's REST API v1: /rest/api/space/{key}, /rest/api/content[/{id}]."""

    def __init__(self, token: str = "conf-secret-token", page_size: int = 2) -> None:
        super().__init__(token)
        self.page_size = page_size  # the server caps `limit`, as Confluence does
        self.spaces: dict[str, str] = {}
        self.pages: dict[str, Page] = {}

    def add_page(self, page: Page) -> Page:
        self.spaces.setdefault(page.space, page.space.title())
        self.pages[page.id] = page
        return page

    def edit(self, page_id: str, body: str) -> None:
        page = self.pages[page_id]
        page.body, page.rendered, page.version = body, None, page.version + 1

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if self.status_override:
            status = self.status_override
            return status, {"statusCode": status, "message": f"Status {status} from the test"}, {}
        if request.headers.get("authorization") != f"Bearer {self.token}":
            # Confluence's own 401 is an HTML page, which the client reports as "Unauthorized (401)".
            return 401, "<html><body>Unauthorized</body></html>", {"WWW-Authenticate": "Bearer"}
        path = request.path
        if path.startswith("/rest/api/space/"):
            key = path.rsplit("/", 1)[1]
            if key not in self.spaces:
                return 404, {"statusCode": 404, "message": f"No space with key : {key}"}, {}
            return 200, {"id": 1, "key": key, "name": self.spaces[key], "type": "global"}, {}
        if path == "/rest/api/content":
            return 200, self._list(request.query), {}
        if path.startswith("/rest/api/content/"):
            page = self.pages.get(path.rsplit("/", 1)[1])
            if page is None:
                return 404, {"statusCode": 404, "message": "No content found with id"}, {}
            return 200, self._page(page, request.query.get("expand", "")), {}
        return 404, {"statusCode": 404, "message": "null for uri"}, {}

    def _list(self, query: dict[str, str]) -> dict:
        pages = [p for p in self.pages.values() if p.space == query.get("spaceKey")]
        start = int(query.get("start", 0))
        limit = min(int(query.get("limit", 25)), self.page_size)
        batch = pages[start : start + limit]
        links: dict[str, str] = {"base": self.url, "context": ""}
        if start + limit < len(pages):
            links["next"] = "/rest/api/content?" + urlencode(
                {**query, "start": start + limit, "limit": limit}
            )
        return {
            "results": [self._page(p, query.get("expand", "")) for p in batch],
            "start": start,
            "limit": limit,
            "size": len(batch),
            "_links": links,
        }

    def _page(self, page: Page, expand: str) -> dict:
        found: dict[str, Any] = {
            "id": page.id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "_links": {"webui": f"/spaces/{page.space}/pages/{page.id}", "self": f"{self.url}/x/{page.id}"},
        }
        wanted = set(expand.split(","))
        if "version" in wanted:
            found["version"] = {"number": page.version, "minorEdit": False}
        body: dict[str, Any] = {}
        if "body.storage" in wanted:
            body["storage"] = {"value": page.body, "representation": "storage"}
        if "body.export_view" in wanted and page.rendered is not None:
            body["export_view"] = {"value": page.rendered, "representation": "export_view"}
        if body:
            found["body"] = body
        return found


# --- Notion -------------------------------------------------------------------------------------


@dataclass
class NotionPage:
    id: str
    title: str
    blocks: list[dict]  # top-level blocks; a block's children in its "children" key
    edited: str = "2026-01-05T10:00:00.000Z"
    data_source: str = ""  # the data source (database) it is a row of, if any
    properties: dict[str, Any] = field(default_factory=dict)  # extra property values of a row


class FakeNotion(JsonServer):
    """Notion's API (2025-09-03): search, data_sources/{id}/query, pages/{id}, blocks/{id}/children."""

    def __init__(self, token: str = "secret_notion_token", page_size: int = 2) -> None:
        super().__init__(token)
        self.page_size = page_size
        self.pages: dict[str, NotionPage] = {}
        self.data_sources: dict[str, str] = {}  # id -> title
        self.hidden_from_search: set[str] = set()  # rows only a data source query finds
        self._blocks: dict[str, dict] = {}

    def add_page(self, page: NotionPage) -> NotionPage:
        self.pages[page.id] = page
        return page

    def edit(self, page_id: str, blocks: list[dict], edited: str) -> None:
        self.pages[page_id].blocks, self.pages[page_id].edited = blocks, edited

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if self.status_override:
            status = self.status_override
            code = {401: "unauthorized", 403: "restricted_resource"}.get(status, "internal_server_error")
            return (
                status,
                {"object": "error", "status": status, "code": code, "message": "From the test."},
                {},
            )
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, self._error(401, "unauthorized", "API token is invalid."), {}
        if not request.headers.get("notion-version"):
            return 400, self._error(400, "missing_version", "Notion-Version header missing"), {}
        path = request.path
        if path == "/v1/search" and request.method == "POST":
            return 200, self._search(request.body or {}), {}
        if path.startswith("/v1/data_sources/") and path.endswith("/query"):
            source = path.split("/")[3]
            rows = [self._page(p) for p in self.pages.values() if p.data_source == source]
            return 200, self._paginate(rows, request.body or {}, "page_or_data_source"), {}
        if path.startswith("/v1/pages/") and request.method == "GET":
            page = self.pages.get(path.split("/")[3])
            if page is None:
                return 404, self._error(404, "object_not_found", "Could not find page."), {}
            return 200, self._page(page), {}
        if path.startswith("/v1/blocks/") and path.endswith("/children"):
            return self._children(path.split("/")[3], request.query)
        return 404, self._error(404, "invalid_request_url", "Invalid request URL."), {}

    @staticmethod
    def _error(status: int, code: str, message: str) -> dict:
        return {"object": "error", "status": status, "code": code, "message": message, "request_id": "r-1"}

    def _paginate(self, results: list[dict], body: dict, kind: str) -> dict:
        start = int(body.get("start_cursor") or 0)
        size = min(int(body.get("page_size") or 100), self.page_size)
        more = start + size < len(results)
        return {
            "object": "list",
            "results": results[start : start + size],
            "next_cursor": str(start + size) if more else None,
            "has_more": more,
            "type": kind,
            kind: {},
        }

    def _search(self, body: dict) -> dict:
        found = [self._page(p) for p in self.pages.values() if p.id not in self.hidden_from_search]
        found += [
            {
                "object": "data_source",
                "id": source,
                "title": [self._text(title)],
                "last_edited_time": "2026-01-01T00:00:00.000Z",
                "url": f"https://www.notion.so/{source.replace('-', '')}",
            }
            for source, title in self.data_sources.items()
        ]
        return self._paginate(found, body, "page_or_data_source")

    @staticmethod
    def _text(text: str, **annotations: Any) -> dict:
        return {
            "type": "text",
            "text": {"content": text, "link": None},
            "annotations": {"bold": False, "italic": False, "code": False, **annotations},
            "plain_text": text,
            "href": None,
        }

    def _page(self, page: NotionPage) -> dict:
        properties: dict[str, Any] = {
            "Name": {"id": "title", "type": "title", "title": [self._text(page.title)]}
        }
        properties.update(page.properties)
        parent = (
            {"type": "data_source_id", "data_source_id": page.data_source}
            if page.data_source
            else {"type": "workspace", "workspace": True}
        )
        return {
            "object": "page",
            "id": page.id,
            "created_time": "2026-01-01T00:00:00.000Z",
            "last_edited_time": page.edited,
            "archived": False,
            "in_trash": False,
            "parent": parent,
            "properties": properties,
            "url": f"https://www.notion.so/{page.title.replace(' ', '-')}-{page.id.replace('-', '')}",
        }

    def _children(self, block_id: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if block_id in self.pages:
            blocks = self.pages[block_id].blocks
        else:
            parent = self._find_block(block_id)
            if parent is None:
                return (
                    404,
                    self._error(404, "object_not_found", f"Could not find block with ID: {block_id}."),
                    {},
                )
            blocks = parent.get("children", [])
        shown = [{k: v for k, v in b.items() if k != "children"} for b in blocks]
        for block in shown:
            block.setdefault("object", "block")
            block["has_children"] = bool(next(b for b in blocks if b["id"] == block["id"]).get("children"))
        start = int(query.get("start_cursor") or 0)
        size = min(int(query.get("page_size") or 100), self.page_size)
        more = start + size < len(shown)
        return (
            200,
            {
                "object": "list",
                "results": shown[start : start + size],
                "next_cursor": str(start + size) if more else None,
                "has_more": more,
                "type": "block",
                "block": {},
            },
            {},
        )

    def _find_block(self, block_id: str) -> dict | None:
        stack = [b for p in self.pages.values() for b in p.blocks]
        while stack:
            block = stack.pop()
            if block["id"] == block_id:
                return block
            stack.extend(block.get("children", []))
        return None
