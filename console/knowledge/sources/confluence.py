"""Confluence: the pages of chosen spaces, through Confluence's REST API (atlassian-python-api).

Listing asks for each space (so a typo or a lost permission is an error, not an empty wiki that
would prune everything), then its pages with their version numbers only; fetching reads one page's
rendered body. The v1 REST API (`rest/api/content`) is the one Server, Data Center and Cloud all
serve; for Cloud the base URL ends in /wiki.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import requests
from atlassian import Confluence
from atlassian.errors import ApiError

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
    comma_list,
    network_reason,
    server_text,
    token_from,
)

logger = logging.getLogger(__name__)

TIMEOUT_S = 30
PAGE_SIZE = 100
_SPACE_KEY = re.compile(r"~?[A-Za-z0-9_.-]+")
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)


@register
class ConfluenceConnector(Connector):
    """Pages of `spaces` on the Confluence at `base_url`; `token_env` names the variable with the token.

    A personal access token (Server, Data Center) is sent as a bearer token; with `username` (an
    Atlassian account's e-mail, for Cloud) the token is its API token, sent with basic auth.
    Without `token_env`, pages are read anonymously (a public wiki).
    """

    kind = "confluence"
    option_names = ("base_url", "spaces", "token_env", "username")
    required = ("base_url", "spaces")

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        cleaned["base_url"] = check_http_url(cls.kind, "base_url", cleaned["base_url"])
        spaces = comma_list(cleaned["spaces"])
        bad = [key for key in spaces if not _SPACE_KEY.fullmatch(key)]
        if not spaces or bad:
            shown = bad[0] if bad else cleaned["spaces"]
            raise OptionsError(
                f"The confluence option 'spaces' takes space keys separated by commas (e.g. ENG,OPS), "
                f"not {str(shown)[:80]!r}."
            )
        cleaned["spaces"] = ",".join(spaces)
        cleaned["token_env"] = check_env_name(cls.kind, "token_env", cleaned.get("token_env"))
        cleaned["username"] = str(cleaned.get("username") or "").strip()
        if cleaned["username"] and not cleaned["token_env"]:
            raise OptionsError(
                "The confluence option 'username' needs 'token_env' (the API token's variable)."
            )
        return cleaned

    # --- listing and fetching ---------------------------------------------------------------

    def items(self) -> Iterator[Item]:
        client = self._client()
        for space in comma_list(self.options["spaces"]):
            self._check_space(client, space)
            try:
                for page in client.get_all_pages_from_space(space, expand="version", limit=PAGE_SIZE):
                    if not isinstance(page, dict) or not page.get("id"):
                        self._not_an_api(f"a page of the space {space} without an id")
                    yield Item(
                        key=str(page["id"]),
                        version=str((page.get("version") or {}).get("number", "")),
                        title=str(page.get("title") or ""),
                        url=self._page_url(page),
                    )
            except (requests.RequestException, ApiError) as err:
                self._listing_failed(err, f"listing the pages of the space {space}")

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        client = self._client(for_item=True)
        try:
            page = client.get_page_by_id(item.key, expand="body.export_view,body.storage,version")
        except ApiError:
            raise ItemError(
                f"Confluence has no page {item.key} any more, or the token may not read it."
            ) from None
        except requests.RequestException as err:
            raise ItemError(f"Confluence could not send the page {item.key}: {self._describe(err)}") from None
        if not isinstance(page, dict):
            raise ItemError(
                f"Confluence did not answer with the page {item.key} (not JSON): try again later."
            )
        title = str(page.get("title") or item.title)
        body = _page_body(page)
        document = (
            '<!doctype html><html><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return Content(filename="page.html", data=document.encode(), title=title)

    # --- the client and its errors ----------------------------------------------------------

    def _client(self, *, for_item: bool = False) -> Confluence:
        env_name = self.options.get("token_env") or ""
        credentials: dict[str, Any] = {}
        if env_name:
            try:
                token = token_from("Confluence", self.secrets, env_name)
            except SourceError as err:
                if for_item:
                    raise ItemError(str(err)) from None
                raise
            if self.options.get("username"):
                credentials = {"username": self.options["username"], "password": token}
            else:
                credentials = {"token": token}
        # cloud=False: the v1 REST API under base_url, whichever host serves it (see the module doc).
        return Confluence(self.options["base_url"], cloud=False, timeout=TIMEOUT_S, **credentials)

    def _check_space(self, client: Confluence, space: str) -> None:
        try:
            found = client.get_space(space)
        except ApiError:
            raise SourceError(
                f"Confluence has no space {space}, or {self._who()} may not read it: check "
                "the 'spaces' option and the token's permissions."
            ) from None
        except requests.RequestException as err:
            self._listing_failed(err, f"reading the space {space}")
        if not isinstance(found, dict) or not found.get("key"):
            self._not_an_api(f"the space {space}")

    def _page_url(self, page: Mapping[str, Any]) -> str:
        webui = str((page.get("_links") or {}).get("webui") or "")
        if webui.startswith(("http://", "https://")):
            return webui
        if webui:
            return self.options["base_url"] + "/" + webui.lstrip("/")
        return f"{self.options['base_url']}/pages/viewpage.action?pageId={page['id']}"

    def _who(self) -> str:
        env_name = self.options.get("token_env")
        return f"the token in ${env_name}" if env_name else "anonymous access (set token_env)"

    def _describe(self, err: Exception) -> str:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status is None:
            return network_reason(err)
        said = server_text(err, self.secrets)
        return f"HTTP {status}: {said}" if said else f"HTTP {status}"

    def _listing_failed(self, err: Exception, doing: str) -> NoReturn:
        status = getattr(getattr(err, "response", None), "status_code", None)
        said = server_text(err, self.secrets)
        said = f": {said}" if said else ""
        if status in (401, 403):
            raise SourceError(
                f"Confluence refused {self._who()} ({status}) while {doing}{said}. "
                "Check that the token is valid and may read the space."
            ) from None
        if status is None:
            raise SourceError(
                f"Could not reach Confluence at {self.options['base_url']} while {doing} "
                f"({network_reason(err)}): check base_url and that the server is up."
            ) from None
        raise SourceError(f"Confluence answered {status} while {doing}{said}. Try again later.") from None

    def _not_an_api(self, what: str) -> NoReturn:
        raise SourceError(
            f"Confluence at {self.options['base_url']} did not answer with its REST API for {what}: "
            "check base_url (for Confluence Cloud it ends in /wiki)."
        )


def _page_body(page: Mapping[str, Any]) -> str:
    """The rendered body (export_view), else the storage format with code macros kept as text."""
    body = page.get("body") or {}
    rendered = str((body.get("export_view") or {}).get("value") or "")
    if rendered.strip():
        return rendered
    storage = str((body.get("storage") or {}).get("value") or "")
    # Storage keeps code and plain-text macros in CDATA, which an HTML parser drops as a comment.
    return _CDATA.sub(lambda m: f"<pre>{html.escape(m.group(1))}</pre>", storage)
