"""Small pieces the file-like connectors (folder, git, website) share: option lists, globs, limits."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from console.knowledge.sources.base import OptionsError
from ml.parsing import SUPPORTED_EXTENSIONS

# Read as plain text: reStructuredText has no parser of its own, and its markup reads well enough.
TEXT_ALIASES = {".rst": ".txt", ".rest": ".txt", ".adoc": ".txt"}


def as_list(options: dict[str, Any], name: str) -> list[str]:
    """An option given as a list of strings or one comma-separated string ("*.md, docs/*")."""
    value = options.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return [part.strip() for part in value if part.strip()]
    raise OptionsError(f"The option {name!r} takes glob patterns: a list, or a comma-separated string.")


def as_positive_int(options: dict[str, Any], name: str, default: int, *, most: int) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= most or isinstance(value, bool):
        raise OptionsError(f"The option {name!r} takes a whole number from 1 to {most}, not {value!r}.")
    return number


def matches(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a relative POSIX path is taken: it matches an include glob (none: every file) and no
    exclude glob. `*` matches across folders too, so `*.md` takes Markdown files at any depth."""
    if include and not any(fnmatch.fnmatchcase(path, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(path, pattern) for pattern in exclude)


def readable_name(path: str) -> str | None:
    """The file name the parsers read `path` as, or None for a type they cannot read."""
    name = PurePosixPath(path).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in TEXT_ALIASES:
        return name + TEXT_ALIASES[suffix]
    return name if suffix in SUPPORTED_EXTENSIONS else None


def max_item_bytes() -> int:
    """The largest item a source may bring in: the upload limit, MAX_UPLOAD_MB."""
    return int(settings.MAX_UPLOAD_MB * 1024 * 1024)


def too_large(size: int) -> str:
    return (
        f"It is {size / 1024 / 1024:.1f} MB, over the {settings.MAX_UPLOAD_MB:g} MB limit (MAX_UPLOAD_MB): "
        "split it, exclude it, or raise the limit."
    )


def allowed_folder(path: Path) -> Path:
    """`path` resolved, if it lies in one of SYNC_FOLDER_ROOTS; OptionsError otherwise."""
    resolved = path.expanduser().resolve()
    roots = settings.SYNC_FOLDER_ROOTS
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise OptionsError(
            f"{path} is outside the folders sources may read ({', '.join(map(str, roots))}): "
            "add it to SYNC_FOLDER_ROOTS on the server."
        )
    return resolved
