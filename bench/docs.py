"""What the bench scripts share: the machine they ran on, and their sections of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import os
import platform
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
