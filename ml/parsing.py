"""Turn an uploaded file into a title and heading-labelled sections of plain text.

Plain data in, plain data out: ingestion jobs call `parse_document` and store the
result; every problem a person can fix surfaces as a `ParseError` they can read.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

logger = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
HEADING_SEPARATOR = " › "
MAX_TITLE_CHARS = 120


class ParseError(ValueError):
    """str(err) is a message written for a person: what went wrong and what to do."""


@dataclass(frozen=True)
class Section:
    heading: str  # "" when the text has no heading above it
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: list[Section]


def parse_document(filename: str, data: bytes, *, max_bytes: int | None = None) -> ParsedDocument:
    """Parse `data` by the extension of `filename`; raise ParseError for anything a person must fix."""
    name = PurePath(filename).name or filename
    ext = PurePath(name).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "(no extension)"
        raise ParseError(f"Unsupported file type {shown}: upload .txt, .md, .html, .pdf or .docx.")
    if max_bytes is not None and len(data) > max_bytes:
        raise ParseError(
            f"{name} is {_megabytes(len(data))}, over the {_megabytes(max_bytes)} limit: "
            "split it into smaller files and upload those."
        )
    if not data.strip():
        raise ParseError(f"{name} is empty: upload a file that contains text.")
    doc = _PARSERS[ext](name, data)
    sections = [s for s in doc.sections if s.text.strip()]
    if not sections:
        raise ParseError(f"{name} contains no readable text: check the file and upload a version with text.")
    return ParsedDocument(title=doc.title.strip() or _stem(name), sections=sections)


def _megabytes(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:.1f} MB" if mb >= 0.1 else f"{mb:.2g} MB"


def _stem(name: str) -> str:
    return PurePath(name).stem or name


# --- Text decoding -----------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _decode_text(name: str, data: bytes) -> str:
    """Decode UTF-8 (a BOM is fine), telling binary files and other encodings apart for the user."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ParseError(f"{name} is saved as UTF-16 text: re-save it as UTF-8 and upload it again.")
    if b"\x00" in data[:65536] or _looks_binary(data[:8192]):
        raise ParseError(f"{name} looks like a binary file, not text: upload the document itself as text.")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = bom + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise ParseError(
            f"{name} is not valid UTF-8 text (byte 0x{data[offset]:02x} at byte offset {offset}, line {line}): "
            "re-save the file as UTF-8 and upload it again."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _looks_binary(sample: bytes) -> bool:
    """Control bytes are what tell binary apart from text in a legacy encoding (whose letters are
    merely invalid UTF-8): compressed or random data is about 11% control bytes, text nearly none."""
    control = len(_CONTROL.findall(sample.decode("latin-1")))
    return control > 0.05 * len(sample)


# --- Shared section building --------------------------------------------------------


class _SectionBuilder:
    """Collects paragraphs under the current heading path ("Setup › Database")."""

    def __init__(self, *, title_is_h1: bool = False) -> None:
        self._title_is_h1 = title_is_h1  # a lone H1 is the title, so it stays out of the paths
        self._path: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        self.flush()
        self._path = [(lvl, t) for lvl, t in self._path if lvl < level]
        if not (self._title_is_h1 and level == 1):
            self._path.append((level, text))

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if text:
            self._paragraphs.append(text)

    def flush(self) -> None:
        if self._paragraphs:
            heading = HEADING_SEPARATOR.join(t for _, t in self._path)
            self.sections.append(Section(heading=heading, text="\n\n".join(self._paragraphs)))
            self._paragraphs = []

    def build(self) -> list[Section]:
        self.flush()
        return self.sections


def _short_line(text: str) -> str:
    """The first non-empty line, if it is short enough to be a title."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else ""
    return ""


# --- Plain text ---------------------------------------------------------------------


def _parse_txt(name: str, data: bytes) -> ParsedDocument:
    text = _decode_text(name, data)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    title = _short_line(text)
    if len(paragraphs) > 1 and paragraphs[0] == title:
        paragraphs = paragraphs[1:]  # the title line stands alone; it is carried as the title
    return ParsedDocument(title=title or _stem(name), sections=[Section("", "\n\n".join(paragraphs))])


# --- Markdown -----------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.S)
_INLINE = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),
    (re.compile(r"<(https?://[^>]+)>"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"</?(?:br|span|div|sup|sub|kbd|b|i|em|strong|details|summary)\b[^>]*>", re.I), ""),
]


def _strip_inline_markdown(line: str) -> str:
    """Light cleanup: keep the words people read, drop link targets and emphasis marks."""
    for pattern, repl in _INLINE:
        line = pattern.sub(repl, line)
    line = re.sub(r"^ {0,3}>[ \t]?", "", line)  # blockquote marker
    return re.sub(r"^(\s*)[*+][ \t]+", r"\1- ", line)  # bullets read the same everywhere


def _parse_markdown(name: str, data: bytes) -> ParsedDocument:
    text = _decode_text(name, data)
    front_title = ""
    if match := _FRONT_MATTER.match(text):
        title_line = re.search(r"^title:\s*[\"']?(.*?)[\"']?\s*$", match.group(1), re.M)
        front_title = title_line.group(1) if title_line else ""
        text = text[match.end() :]
    blocks = _markdown_blocks(text.split("\n"))
    h1s = [text for level, text in blocks if level == 1 and text]
    builder = _SectionBuilder(title_is_h1=len(h1s) == 1 and not front_title)
    for level, text in blocks:
        if level:
            builder.heading(level, text)
        else:
            builder.paragraph(text)
    title = front_title or (h1s[0] if h1s else "")
    return ParsedDocument(title=title, sections=builder.build())


def _markdown_blocks(lines: list[str]) -> list[tuple[int, str]]:
    """(heading level, text) per heading and (0, text) per paragraph; fenced code is kept verbatim."""
    blocks: list[tuple[int, str]] = []
    paragraph: list[str] = []
    fence = ""

    def flush() -> None:
        if paragraph:
            blocks.append((0, "\n".join(paragraph)))
            paragraph.clear()

    for line in lines:
        fence_match = _FENCE.match(line)
        marker = fence_match.group(1) if fence_match else ""
        if fence:
            if marker[:1] == fence[0] and len(marker) >= len(fence):
                fence = ""
                flush()
            else:
                paragraph.append(line.rstrip())
        elif marker:
            flush()
            fence = marker
        elif heading := _ATX.match(line):
            flush()
            blocks.append((len(heading.group(1)), _strip_inline_markdown(heading.group(2) or "").strip()))
        elif _SETEXT.match(line) and len(paragraph) == 1 and not paragraph[0].startswith("- "):
            blocks.append((1 if line.strip()[0] == "=" else 2, paragraph.pop()))
        elif not line.strip() or _RULE.match(line):
            flush()
        elif not _TABLE_RULE.match(line) and not _LINK_DEF.match(line):
            paragraph.append(_strip_inline_markdown(line.rstrip()))
    flush()
    return blocks


# --- HTML ---------------------------------------------------------------------------

_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head", "footer", "form")
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset(
    "p div li dl dt dd pre blockquote tr section article main aside header figure figcaption caption "
    "address details summary".split()
)


def _parse_html(name: str, data: bytes) -> ParsedDocument:
    from bs4 import BeautifulSoup

    text = _decode_html(name, data)
    try:
        soup = BeautifulSoup(text, "html.parser")
    except Exception as err:  # html.parser is lenient; anything here is a truly broken file
        raise ParseError(f"{name} could not be read as HTML ({err}): re-save it and upload again.") from None
    title_tag = soup.find("title")
    page_title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    h1s = [" ".join(h1.get_text(" ").split()) for h1 in soup.find_all("h1")]
    # A lone H1 that the page title repeats ("Backups — Acme Docs") is the title, not a section.
    title_is_h1 = len(h1s) == 1 and h1s[0].lower() in (page_title.lower() or h1s[0].lower())
    for tag in soup.find_all(list(_DROPPED_TAGS)):
        tag.decompose()
    builder = _SectionBuilder(title_is_h1=title_is_h1)
    _walk_html(soup.body or soup, builder)
    return ParsedDocument(title=page_title or (h1s[0] if h1s else ""), sections=builder.build())


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
    return _decode_text(name, data)


def _walk_html(root, builder: _SectionBuilder) -> None:
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


def _html_context(node, root):
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


# --- PDF ----------------------------------------------------------------------------


def _parse_pdf(name: str, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader

    unreadable = (
        f"{name} could not be read as a PDF: the file is damaged or is not really a PDF. "
        "Export it again from the program that made it and upload the new file."
    )
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _decrypt_pdf(name, reader)
        pages = list(reader.pages)
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except ParseError:
        raise
    except Exception as err:
        logger.info("pdf unreadable name=%s error=%r", name, err)
        raise ParseError(unreadable) from None
    if not pages:
        raise ParseError(unreadable)
    sections = [Section(f"Page {number}", text) for number, text in _pdf_page_texts(name, pages)]
    if not sections:
        raise ParseError(
            f"{name} has no extractable text; it looks like scanned images. "
            "Run it through OCR (for example ocrmypdf) or upload a text version."
        )
    title = str(meta_title).strip() or _short_line(sections[0].text)
    return ParsedDocument(title=title or _stem(name), sections=sections)


def _decrypt_pdf(name: str, reader) -> None:
    """Open PDFs that are encrypted with an empty password (common for "no copying" flags)."""
    try:
        opened = reader.decrypt("")
    except Exception:
        opened = False
    if not opened:
        raise ParseError(
            f"{name} is password-protected or encrypted: remove the protection and upload it again."
        )


def _pdf_page_texts(name: str, pages: list) -> list[tuple[int, str]]:
    """Text per page; one broken page is skipped and logged rather than losing the whole file."""
    texts = []
    for number, page in enumerate(pages, start=1):
        try:
            raw = page.extract_text() or ""
        except Exception as err:
            logger.warning("pdf page skipped name=%s page=%d error=%r", name, number, err)
            continue
        text = re.sub(r"[ \t]+\n", "\n", raw.replace("\x00", "")).strip()
        if text:
            texts.append((number, re.sub(r"\n{3,}", "\n\n", text)))
    return texts


# --- Word (.docx) -------------------------------------------------------------------


def _parse_docx(name: str, data: bytes) -> ParsedDocument:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [_docx_block(item) for item in document.iter_inner_content()]
        core_title = document.core_properties.title or ""
    except Exception as err:
        logger.info("docx unreadable name=%s error=%r", name, err)
        raise ParseError(
            f"{name} could not be opened as a Word document: the file is damaged or is not a .docx "
            "(an older .doc must be saved as .docx in Word first). Save it again and upload the new file."
        ) from None
    has_title_style = any(kind == "title" for kind, _, _ in blocks)
    h1s = [text for kind, level, text in blocks if kind == "heading" and level == 1]
    builder = _SectionBuilder(title_is_h1=len(h1s) == 1 and not has_title_style)
    style_title = ""
    for kind, level, text in blocks:
        if kind == "title":
            style_title = style_title or text
        elif kind == "heading":
            builder.heading(level, text)
        else:
            builder.paragraph(text)
    lone_h1 = h1s[0] if len(h1s) == 1 and not has_title_style else ""
    title = style_title or lone_h1 or core_title.strip() or (h1s[0] if h1s else "")
    return ParsedDocument(title=title, sections=builder.build())


def _docx_block(item) -> tuple[str, int, str]:
    """Classify one body item as ("title" | "heading" | "text", level, text)."""
    from docx.table import Table

    if isinstance(item, Table):
        return "text", 0, _docx_table_text(item)
    style = (getattr(item.style, "name", "") or "").lower()
    text = item.text.strip()
    if style == "title":
        return "title", 0, text
    if match := re.fullmatch(r"heading ([1-9])", style):
        return "heading", int(match.group(1)), text
    if style.startswith("list") and text:
        return "text", 0, f"- {text}"
    return "text", 0, text


def _docx_table_text(table) -> str:
    """One line per row, cells joined by " | "; merged cells repeat in python-docx, so they collapse."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


_PARSERS: dict[str, Callable[[str, bytes], ParsedDocument]] = {
    ".txt": _parse_txt,
    ".md": _parse_markdown,
    ".markdown": _parse_markdown,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".pdf": _parse_pdf,
    ".docx": _parse_docx,
}
