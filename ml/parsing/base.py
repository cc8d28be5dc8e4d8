"""What every format's parser shares: the result types, ParseError, UTF-8 decoding with
messages a person can act on, and the builder that files paragraphs under heading paths."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import PurePath

HEADING_SEPARATOR = " › "
MAX_TITLE_CHARS = 120


class ParseError(ValueError):
    """str(err) is a message written for a person: what went wrong and what to do."""


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on what one file may make the parser do, so a hostile file fails alone and fast.

    A .docx is a zip: its declared unpacked sizes bound what unzipping produces (zipfile stops
    at the declared size), so their sum and the entry count catch a zip bomb before any unpacking.
    HTML nested deeper than `max_html_depth` elements is refused: walking it costs depth × text.
    """

    max_unpacked_bytes: int = 200 * 1024 * 1024
    max_archive_entries: int = 2000
    max_html_depth: int = 256


@dataclass(frozen=True)
class Section:
    heading: str  # "" when the text has no heading above it
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: list[Section]


def megabytes(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:.1f} MB" if mb >= 0.1 else f"{mb:.2g} MB"


def stem(name: str) -> str:
    return PurePath(name).stem or name


# --- Text decoding -----------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(name: str, data: bytes) -> str:
    """Decode UTF-8 (a BOM is fine), telling binary files and other encodings apart for the user."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ParseError(f"{name} is saved as UTF-16 text: re-save it as UTF-8 and upload it again.")
    if b"\x00" in data[:65536] or looks_binary(data[:8192]):
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


def looks_binary(sample: bytes) -> bool:
    """Control bytes are what tell binary apart from text in a legacy encoding (whose letters are
    merely invalid UTF-8): compressed or random data is about 11% control bytes, text nearly none."""
    control = len(_CONTROL.findall(sample.decode("latin-1")))
    return control > 0.05 * len(sample)


# --- Shared section building --------------------------------------------------------


class SectionBuilder:
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


def short_line(text: str) -> str:
    """The first non-empty line, if it is short enough to be a title."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else ""
    return ""
