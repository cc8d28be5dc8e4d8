"""python manage.py ingest PATH [PATH ...] --collection SLUG [--sync]"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import django_rq
from django.core.management.base import BaseCommand, CommandError
from rq import Worker
from tqdm import tqdm

from console.knowledge import ingestion
from console.knowledge.ingestion import IngestSummary
from console.knowledge.models import Collection, Document


class Command(BaseCommand):
    help = "Add files or folders (recursively) to a collection and index them."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--collection", required=True, help="Collection slug (created if missing).")
        parser.add_argument("--sync", action="store_true", help="Index in this process, without a worker.")

    def handle(self, *args: Any, paths: list[Path], collection: str, sync: bool, **options: Any) -> None:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CommandError(f"No such file or folder: {', '.join(missing)}")
        target, _ = Collection.objects.get_or_create(slug=collection, defaults={"name": collection})
        summary = ingestion.IngestSummary()
        pending = ingestion.register_paths(target, paths, summary)
        if pending:
            self._index(pending, summary, sync)
        self._print_summary(summary)
        if summary.failed:
            raise CommandError(f"{len(summary.failed)} document(s) failed.", returncode=1)

    def _index(self, pending: list[Document], summary: IngestSummary, sync: bool) -> None:
        if not sync:
            ingestion.enqueue(pending, summary)
            if not Worker.all(queue=django_rq.get_queue("ingest")):
                self.stdout.write(
                    f"Queued {len(pending)} document(s), but no worker listens on queue 'ingest'. "
                    "Start one with `python manage.py rqworker ingest`, or re-run with --sync."
                )
                return
        with tqdm(total=len(pending), unit="doc", desc="Indexing", file=sys.stderr) as bar:

            def advance(document: Document) -> None:
                bar.set_postfix_str(document.source[-40:])
                bar.update(1)

            def embedding(done: int, total: int) -> None:
                bar.set_postfix_str(f"embedding {done}/{total} chunks")

            if sync:
                ingestion.index_now(pending, summary, advance, embedding)
            else:
                ingestion.wait_for(pending, summary, advance)
                summary.queued.clear()

    def _print_summary(self, summary: IngestSummary) -> None:
        self.stdout.write(
            f"Indexed {len(summary.indexed)}, skipped {len(summary.skipped)} unchanged, "
            f"failed {len(summary.failed)}"
            + (f", queued {len(summary.queued)}" if summary.queued else "")
            + "."
        )
        for document in summary.indexed:
            self.stdout.write(
                f"  indexed  {document.source} (v{document.version}, {document.chunk_count} chunks)"
            )
        for document in summary.failed:
            self.stdout.write(self.style.ERROR(f"  failed   {document.source}: {document.error}"))
        if summary.ignored:
            kinds = ", ".join(f"{ext} ×{n}" for ext, n in sorted(summary.ignored.items()))
            self.stdout.write(f"  ignored files of unsupported types in folders: {kinds}")
