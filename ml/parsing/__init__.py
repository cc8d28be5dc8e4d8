"""Turn an uploaded file into a title and heading-labelled sections of plain text.

Plain data in, plain data out: ingestion jobs call `parse_document` and store the
result; every problem a person can fix surfaces as a `ParseError` they can read.
One module per kind of format: `text` (plain text, Markdown), `html`, `office` (PDF, .docx).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import PurePath

from ml.parsing.base import (
    HEADING_SEPARATOR,
    ParsedDocument,
    ParseError,
    ParseLimits,
    Section,
    megabytes,
    stem,
)
from ml.parsing.html import parse_html
from ml.parsing.office import check_archive, parse_docx, parse_pdf
from ml.parsing.text import parse_markdown, parse_txt

__all__ = [
    "HEADING_SEPARATOR",
    "SUPPORTED_EXTENSIONS",
    "ParseError",
    "ParseLimits",
    "ParsedDocument",
    "Section",
    "parse_document",
]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
PARSERS: dict[str, Callable[[str, bytes], ParsedDocument]] = {
    ".txt": parse_txt,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
}


def parse_document(
    filename: str, data: bytes, *, max_bytes: int | None = None, limits: ParseLimits | None = None
) -> ParsedDocument:
    """Parse `data` by the extension of `filename`; raise ParseError for anything a person must fix."""
    limits = limits or ParseLimits()
    name = PurePath(filename).name or filename
    ext = PurePath(name).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "(no extension)"
        raise ParseError(f"Unsupported file type {shown}: upload .txt, .md, .html, .pdf or .docx.")
    if max_bytes is not None and len(data) > max_bytes:
        raise ParseError(
            f"{name} is {megabytes(len(data))}, over the {megabytes(max_bytes)} limit: "
            "split it into smaller files and upload those."
        )
    if not data.strip():
        raise ParseError(f"{name} is empty: upload a file that contains text.")
    if ext == ".docx":
        check_archive(name, data, limits)
    parser = partial(parse_html, limits=limits) if PARSERS[ext] is parse_html else PARSERS[ext]
    doc = parser(name, data)
    sections = [s for s in doc.sections if s.text.strip()]
    if not sections:
        raise ParseError(f"{name} contains no readable text: check the file and upload a version with text.")
    return ParsedDocument(title=doc.title.strip() or stem(name), sections=sections)
