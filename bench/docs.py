"""docs/benchmarks.md is shared: each bench script owns the section between its two markers."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nWritten by the scripts in `bench/`; each owns the section between its markers.\n"


def write_section(path: Path, start: str, end: str, body: str) -> None:
    """Replace the section between `start` and `end` in `path` (read just now), or append it."""
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
