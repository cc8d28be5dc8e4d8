"""Folder on the server: every readable file under `path` that the globs take.

Replaces "run ingest again": a file deleted from the folder leaves the knowledge base at the
next sync. Version = modification time and size, so an unchanged file is not even read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from console.knowledge.sources.base import (
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
    register,
)
from console.knowledge.sources.common import (
    allowed_folder,
    as_list,
    matches,
    max_item_bytes,
    readable_name,
    too_large,
)


@register
class FolderConnector(Connector):
    kind = "folder"
    option_names = ("path", "include", "exclude")
    required = ("path",)

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        cleaned = super().validate(options)
        if not isinstance(cleaned["path"], str):
            raise OptionsError("The option 'path' takes a folder on the server, e.g. /srv/handbook.")
        cleaned["path"] = str(allowed_folder(Path(cleaned["path"])))
        for name in ("include", "exclude"):
            if name in cleaned:
                cleaned[name] = as_list(cleaned, name)
        return cleaned

    @property
    def root(self) -> Path:
        try:
            return allowed_folder(Path(self.options["path"]))
        except OptionsError as err:
            raise SourceError(str(err)) from err

    def items(self) -> Iterator[Item]:
        root = self.root
        if not root.is_dir():
            raise SourceError(
                f"The folder {root} is missing or not a folder (is the disk mounted?): nothing was deleted."
            )
        include, exclude = as_list(self.options, "include"), as_list(self.options, "exclude")
        try:
            files = sorted(p for p in root.rglob("*") if p.is_file())
        except OSError as err:
            raise SourceError(f"The folder {root} could not be read ({err.strerror or err}).") from err
        for file in files:
            relative = file.relative_to(root).as_posix()
            if any(part.startswith(".") for part in relative.split("/")) or readable_name(relative) is None:
                continue
            if not matches(relative, include, exclude) or not file.resolve().is_relative_to(root):
                continue  # the globs leave it out, or a link points outside the folder
            stat = file.stat()
            yield Item(key=relative, version=f"{stat.st_mtime_ns}-{stat.st_size}")

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        file = self.root / item.key
        try:
            size = file.stat().st_size
            if size > max_item_bytes():
                raise ItemError(too_large(size))
            data = file.read_bytes()
        except OSError as err:
            raise ItemError(f"The file could not be read ({err.strerror or err}).") from err
        return Content(filename=readable_name(item.key) or file.name, data=data)
