"""Plain text and Markdown."""

from __future__ import annotations

import re

from ml.parsing.base import ParsedDocument, Section, SectionBuilder, decode_text, short_line, stem

# --- Plain text ---------------------------------------------------------------------


def parse_txt(name: str, data: bytes) -> ParsedDocument:
    text = decode_text(name, data)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    title = short_line(text)
    if len(paragraphs) > 1 and paragraphs[0] == title:
        paragraphs = paragraphs[1:]  # the title line stands alone; it is carried as the title
    return ParsedDocument(title=title or stem(name), sections=[Section("", "\n\n".join(paragraphs))])


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


def parse_markdown(name: str, data: bytes) -> ParsedDocument:
    text = decode_text(name, data)
    front_title = ""
    if match := _FRONT_MATTER.match(text):
        title_line = re.search(r"^title:\s*[\"']?(.*?)[\"']?\s*$", match.group(1), re.M)
        front_title = title_line.group(1) if title_line else ""
        text = text[match.end() :]
    blocks = _markdown_blocks(text.split("\n"))
    h1s = [text for level, text in blocks if level == 1 and text]
    builder = SectionBuilder(title_is_h1=len(h1s) == 1 and not front_title)
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
