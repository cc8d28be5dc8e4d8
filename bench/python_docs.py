"""The Python 3.11 manual as a real corpus for the retrieval benchmark: its pages, the labelled
questions, and a database that keeps the ingested manual between runs.

Ingesting ~500 pages takes minutes on a small CPU, so the manual lives in its own database beside
the configured one (`<name>_python_docs_bench`), tagged with a fingerprint of everything that
shapes its chunks (the pages, the parser, chunker, embedding model and migrations). A run whose
fingerprint matches reuses it; any change rebuilds it. The dev data is never read or written.

Import after django.setup() (bench.environment.setup_django).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import override_settings

from bench.report import ROOT, progress
from console.knowledge import indexing, ingestion
from console.knowledge.models import Collection, Document

HTML_ROOT = Path("/usr/share/doc/python3.11/html")
PACKAGE = "python3.11-doc"
INSTALL = f"sudo apt-get install {PACKAGE}"
QUESTIONS = ROOT / "bench" / "data" / "python_docs_questions.jsonl"
COLLECTION = "python-docs"
DATABASE_SUFFIX = "python_docs_bench"
MAX_QUESTIONS_PER_PAGE = 2
# Sphinx's generated indexes (every name in the manual, linked): navigation, not content.
GENERATED = ("genindex", "py-modindex", "search")
# Code whose change alters the stored chunks, so the cached database is re-ingested: the parser,
# the chunker and the embedder. Schema changes reach a reused database through the product's own
# migrations, as they reach a deployment; a change to how indexing fills rows that comes without
# a migration needs --rebuild.
SHAPING_CODE = ("ml/parsing", "ml/chunking.py", "ml/embeddings.py")


@dataclass(frozen=True)
class Labelled:
    """A user's question and the pages (relative to the HTML root) that answer it."""

    question: str
    pages: tuple[str, ...]


def installed() -> bool:
    return (HTML_ROOT / "index.html").is_file()


def manual_pages(root: Path = HTML_ROOT) -> list[tuple[str, Path]]:
    """(source, file) for every HTML page of the manual; the source is the path under the root."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        source = path.relative_to(root).as_posix()
        if source.startswith("_") or path.stem.split("-")[0] in GENERATED:
            continue
        pages.append((source, path))
    return pages


def load_questions(path: Path = QUESTIONS, root: Path = HTML_ROOT) -> list[Labelled]:
    """The labelled questions, checked: every page exists, no page answers too many of them."""
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        question, pages = row.get("question", "").strip(), tuple(row.get("pages") or ())
        if not question or not pages:
            raise SystemExit(f"{path}:{number}: each line needs a question and at least one page.")
        missing = [page for page in pages if not (root / page).is_file()]
        if missing:
            raise SystemExit(f"{path}:{number}: no such page under {root}: {', '.join(missing)}")
        questions.append(Labelled(question, pages))
    crowded = [
        page
        for page, n in Counter(page for q in questions for page in q.pages).items()
        if n > MAX_QUESTIONS_PER_PAGE
    ]
    if crowded:
        raise SystemExit(
            f"{path}: more than {MAX_QUESTIONS_PER_PAGE} questions on {', '.join(sorted(crowded))}; "
            "spread the questions over more pages."
        )
    return questions


# --- The cached database ----------------------------------------------------------------------


def fingerprint(pages: list[tuple[str, Path]]) -> str:
    """What the stored chunks depend on: the pages, the code that parses, chunks and embeds them,
    the embedding model and the chunk settings."""
    digest = hashlib.sha256()
    for source, path in pages:
        digest.update(f"{source}\0{path.stat().st_size}\0".encode())
    for name in SHAPING_CODE:
        target = ROOT / name
        for code in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(code.relative_to(ROOT).as_posix().encode() + b"\0" + code.read_bytes())
    digest.update(f"{settings.EMBEDDING_MODEL}\0{settings.CHUNK_OVERLAP_TOKENS}".encode())
    return digest.hexdigest()[:16]


def _stored_fingerprint(name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        )
        row = cursor.fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def cached_database(print_: str, build: Callable[[], None], *, rebuild: bool = False) -> Iterator[bool]:
    """Switch to the manual's own database for the block; yields whether it was (re)built.

    A database whose comment holds `print_` is reused (migrated to the current schema first);
    otherwise it is dropped, migrated afresh and `build()` fills it, and the comment is written only once that finished, so an
    interrupted build is never mistaken for a complete one.
    """
    real_name = connection.settings_dict["NAME"]
    name = f"{real_name}_{DATABASE_SUFFIX}"
    reuse = not rebuild and _stored_fingerprint(name) == print_
    connection.settings_dict["TEST"]["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=reuse)
    if connection.settings_dict["NAME"] == real_name:
        raise RuntimeError("Refusing to run: the benchmark database was not created.")
    try:
        if not reuse:
            with (
                tempfile.TemporaryDirectory(prefix="python-docs-media-") as media,
                override_settings(MEDIA_ROOT=media),
            ):
                build()
            with connection.cursor() as cursor:
                cursor.execute(f"COMMENT ON DATABASE {connection.ops.quote_name(name)} IS %s", [print_])
        yield not reuse
    finally:
        connection.creation.destroy_test_db(real_name, verbosity=0, keepdb=True)


def ingest_pages(slug: str, pages: list[tuple[str, Path]]) -> list[Document]:
    """Register and index the pages into a new collection through the product's own pipeline
    (register_file, then ingestion.index_now: parse, chunk, embed in batches); returns failures."""
    collection = Collection.objects.create(name=slug, slug=slug)
    summary = ingestion.IngestSummary()
    pending = [
        indexing.register_file(collection, source, path.read_bytes()).document for source, path in pages
    ]
    done = 0

    def report(document: Document) -> None:
        nonlocal done
        done += 1
        if done % 25 == 0 or done == len(pending):
            progress(f"indexed {done}/{len(pending)} pages")

    ingestion.index_now(pending, summary, report)
    return summary.failed
