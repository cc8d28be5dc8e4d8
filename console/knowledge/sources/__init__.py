"""Connectors: where a Source's documents come from (a folder, a website, a git repository, a wiki, chat).

Each kind is one module with one `Connector` subclass registered in `CONNECTORS`; the sync job
(`console/knowledge/syncing.py`) only talks to the interface in `base.py`.
"""

# Each module registers its kind.
from console.knowledge.sources import confluence, folder, git, notion, slack, website  # noqa: F401
from console.knowledge.sources.base import (
    CONNECTORS,
    Candidate,
    Connector,
    Content,
    Item,
    ItemError,
    OptionsError,
    SourceError,
)

__all__ = [
    "CONNECTORS",
    "Candidate",
    "Connector",
    "Content",
    "Item",
    "ItemError",
    "OptionsError",
    "SourceError",
]
