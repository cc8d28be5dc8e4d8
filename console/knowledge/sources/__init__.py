"""Connectors: where a Source's documents come from (a folder, a website, a git repository, a wiki, chat).

Each kind is one module with one `Connector` subclass registered in `CONNECTORS`; the sync job
(`console/knowledge/syncing.py`) only talks to the interface in `base.py`.
"""

import console.knowledge.sources.confluence  # noqa: F401
import console.knowledge.sources.notion  # noqa: F401
import console.knowledge.sources.slack  # noqa: F401
