"""HTML: headings become section paths; scripts, navigation and other page furniture are dropped."""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING

from ml.parsing.base import ParsedDocument, ParseError, ParseLimits, SectionBuilder, decode_text

if TYPE_CHECKING:
    from bs4 import NavigableString, Tag

_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head", "footer", "form")
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset(
    "p div li dl dt dd pre blockquote tr section article main aside header figure figcaption caption "
    "address details summary".split()
)


def parse_html(name: str, data: bytes, limits: ParseLimits | None = None) -> ParsedDocument:
    from bs4 import BeautifulSoup

    text = _decode_html(name, data)
    try:
        soup = BeautifulSoup(text, "html.parser")
    except Exception as err:  # html.parser is lenient; anything here is a truly broken file
        raise ParseError(f"{name} could not be read as HTML ({err}): re-save it and upload again.") from None
    check_html_depth(name, soup, (limits or ParseLimits()).max_html_depth)
    title_tag = soup.find("title")
    page_title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    h1s = [" ".join(h1.get_text(" ").split()) for h1 in soup.find_all("h1")]
    # A lone H1 that the page title repeats ("Backups — Acme Docs") is the title, not a section.
    title_is_h1 = len(h1s) == 1 and h1s[0].lower() in (page_title.lower() or h1s[0].lower())
    for tag in soup.find_all(list(_DROPPED_TAGS)):
        tag.decompose()
    builder = SectionBuilder(title_is_h1=title_is_h1)
    _walk_html(soup.body or soup, builder)
    return ParsedDocument(title=page_title or (h1s[0] if h1s else ""), sections=builder.build())


def check_html_depth(name: str, root: Tag, limit: int) -> None:
    """ParseError when elements nest deeper than `limit`; one linear pass, no recursion."""
    from bs4 import Tag

    depth = {id(root): 0}
    for node in root.descendants:
        if isinstance(node, Tag):
            level = depth[id(node.parent)] + 1
            if level > limit:
                raise ParseError(
                    f"{name} nests HTML elements more than {limit} levels deep (MAX_HTML_DEPTH), which no "
                    "real page needs: it is malformed or hostile. Save the page's text and upload that."
                )
            depth[id(node)] = level


def _decode_html(name: str, data: bytes) -> str:
    """UTF-8 like every text format, except a page that declares another charset is trusted."""
    declared = re.search(rb"""<meta[^>]+charset=["']?([\w-]+)""", data[:4096], re.I)
    if declared:
        charset = declared.group(1).decode("ascii").lower()
        try:
            if codecs.lookup(charset).name != "utf-8":
                return data.decode(charset, errors="replace")
        except LookupError:
            pass
    return decode_text(name, data)


def _walk_html(root: Tag, builder: SectionBuilder) -> None:
    """Walk strings in document order; a change of enclosing block element starts a new paragraph."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    parts: list[str] = []
    current_block = None
    for node in root.descendants:
        if isinstance(node, Tag):
            if node.name in _HEADINGS:
                builder.paragraph("".join(parts))
                parts, current_block = [], None
                builder.heading(_HEADINGS[node.name], node.get_text(" ", strip=True))
            elif node.name == "br":
                parts.append("\n")
            elif node.name in ("td", "th") and node.find_previous_sibling(("td", "th")):
                parts.append(" | ")
            continue
        if not isinstance(node, NavigableString) or isinstance(node, PreformattedString):
            continue
        block, in_heading, in_pre = _html_context(node, root)
        if in_heading:
            continue
        if block is not current_block:
            builder.paragraph("".join(parts))
            parts, current_block = [], block
        parts.append(str(node) if in_pre else re.sub(r"\s+", " ", str(node)))
    builder.paragraph("".join(parts))


def _html_context(node: NavigableString, root: Tag) -> tuple[Tag, bool, bool]:
    """The nearest block-level ancestor, and whether the string sits in a heading or a <pre>."""
    block, in_pre = None, False
    for parent in node.parents:
        if parent is root:
            break
        if parent.name in _HEADINGS:
            return parent, True, False
        in_pre = in_pre or parent.name == "pre"
        if block is None and parent.name in _BLOCKS:
            block = parent
    return block or root, False, in_pre
