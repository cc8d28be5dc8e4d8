"""Folders written whole or not at all: checkpoints, adapters and converted models are staged in a
hidden sibling and renamed into place, so a reader sees either the complete folder or none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """Call write(staging) on a hidden sibling of `folder`, then rename it to `folder`.

    If `write` raises, the staging folder is removed and `folder` is left as it was.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(staging)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stagings(folder: Path) -> None:
    """Delete the staging folders a crashed write_atomically(folder, ...) left behind."""
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def make_world_readable(folder: Path) -> None:
    """mkdtemp (and the safetensors writer) create owner-only files; other service users read them."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
