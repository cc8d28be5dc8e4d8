"""The contract between the sync job and a connector.

A sync lists a source's items (cheap: ids and version markers, no bodies where the protocol allows),
compares them with the documents the source brought in before, fetches only new and changed items,
and prunes documents whose items are gone — unless the listing failed or shrank suspiciously.
Connectors know their protocol and nothing about the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class SourceError(Exception):
    """The listing failed (host unreachable, 401/403, malformed index): nothing may be pruned.

    The message is shown to an operator in the admin: say what failed and what to do, and never
    include a credential.
    """


class ItemError(Exception):
    """One item could not be fetched or read; that document fails with this message, the sync goes on."""


class OptionsError(ValueError):
    """A source's options are invalid; the message names the option and what is expected."""


@dataclass(frozen=True)
class Item:
    """One thing a source holds, as listed: `key` is stable across syncs, `version` changes with it."""

    key: str  # the path, URL, page id or thread ts: unique within the source
    version: str  # ETag / Last-Modified, commit or blob sha, page version, edit time
    title: str = ""
    url: str = ""  # where a person reads it; answers link their sources here


@dataclass(frozen=True)
class Candidate:
    """A training pair a source nominates (e.g. a Slack thread whose answer was accepted with ✅)."""

    question: str
    answer: str


@dataclass(frozen=True)
class Content:
    """A fetched item: bytes the existing parsers read, named so the file type is known."""

    filename: str  # e.g. "guide.md", "page.html": its suffix picks the parser
    data: bytes
    title: str = ""
    candidates: tuple[Candidate, ...] = field(default=())
    # A conditional fetch may find the item unchanged after all (304): nothing to index.
    unchanged: bool = False
    # A version marker the fetch learnt (an ETag), stored in place of the listed one and given
    # back as `previous_version` next time; empty: the listed version is stored.
    version: str = ""


class Connector:
    """Base class: subclasses set `kind` and `option_names`, and implement `items` and `fetch`.

    `options` are the source's validated options; `secrets` maps the environment-variable names a
    source references (e.g. `token_env`) to their values, read by the caller, never stored.
    """

    kind: ClassVar[str] = ""
    option_names: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> None:
        self.options = dict(options)
        self.secrets = dict(secrets or {})

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options, cleaned; raises OptionsError naming the first bad one."""
        unknown = sorted(set(options) - set(cls.option_names))
        if unknown:
            raise OptionsError(
                f"Unknown option {unknown[0]!r} for a {cls.kind} source: use {', '.join(cls.option_names)}."
            )
        missing = [name for name in cls.required if not options.get(name)]
        if missing:
            raise OptionsError(f"A {cls.kind} source needs the option {missing[0]!r}.")
        return dict(options)

    def items(self) -> Iterator[Item]:
        """Every item the source holds now; raises SourceError when the listing fails."""
        raise NotImplementedError

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        """The item's content; raises ItemError. `previous_version` allows a conditional request."""
        raise NotImplementedError


CONNECTORS: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator: make a connector available under its `kind`."""
    CONNECTORS[cls.kind] = cls
    return cls
