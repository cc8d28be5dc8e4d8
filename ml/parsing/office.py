"""PDF (pypdf) and Word .docx (python-docx)."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from typing import TYPE_CHECKING

from ml.parsing.base import (
    ParsedDocument,
    ParseError,
    ParseLimits,
    Section,
    SectionBuilder,
    megabytes,
    short_line,
    stem,
)

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph
    from pypdf import PdfReader

logger = logging.getLogger(__name__)


# --- PDF ----------------------------------------------------------------------------


def parse_pdf(name: str, data: bytes) -> ParsedDocument:
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
    title = str(meta_title).strip() or short_line(sections[0].text)
    return ParsedDocument(title=title or stem(name), sections=sections)


def _decrypt_pdf(name: str, reader: PdfReader) -> None:
    """Open PDFs that are encrypted with an empty password (common for "no copying" flags)."""
    try:
        opened = bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
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


def check_archive(name: str, data: bytes, limits: ParseLimits) -> None:
    """ParseError for a zip bomb: too many entries, or entries that unpack to too much in all.

    Reads only the zip's central directory; a file that is no zip at all is left to the parser,
    whose message says so.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    unpacked = sum(entry.file_size for entry in entries)
    if len(entries) > limits.max_archive_entries or unpacked > limits.max_unpacked_bytes:
        raise ParseError(
            f"{name} unpacks to {megabytes(unpacked)} in {len(entries):,} parts, over the limits of "
            f"{megabytes(limits.max_unpacked_bytes)} (MAX_UNPACKED_MB) and {limits.max_archive_entries:,} "
            "parts (MAX_ARCHIVE_ENTRIES): it looks like a zip bomb, not a Word document. "
            "Save it again from Word and upload the new file."
        )


def parse_docx(name: str, data: bytes) -> ParsedDocument:
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
    builder = SectionBuilder(title_is_h1=len(h1s) == 1 and not has_title_style)
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


def _docx_block(item: Paragraph | Table) -> tuple[str, int, str]:
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


def _docx_table_text(table: Table) -> str:
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
