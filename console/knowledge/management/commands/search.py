"""python manage.py search "QUERY" [--k 5] [--collection SLUG] [--json]"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from console.knowledge.models import Collection
from console.knowledge.search import METHODS, search


class Command(BaseCommand):
    help = "Search the knowledge base (hybrid vector + full-text retrieval)."

    def add_arguments(self, parser):
        parser.add_argument("query")
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--collection", help="Search only this collection (slug).")
        parser.add_argument("--method", choices=METHODS, default="hybrid")
        parser.add_argument("--json", action="store_true", help="Print a JSON list.")

    def handle(
        self, *args: Any, query: str, k: int, collection: str | None, method: str, **options: Any
    ) -> None:
        if collection and not Collection.objects.filter(slug=collection).exists():
            raise CommandError(f"No collection with slug {collection!r}.")
        results = search(query, k=k, collections=[collection] if collection else None, method=method)
        if options["json"]:
            payload = [
                {
                    "document": r.document,
                    "source": r.source,
                    "heading": r.heading,
                    "text": r.text,
                    "score": round(r.score, 6),
                    "similarity": None if r.similarity is None else round(r.similarity, 6),
                    "chunk_id": r.chunk_id,
                    "document_version": r.document_version,
                }
                for r in results
            ]
            self.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2))
            return
        if not results:
            self.stdout.write("No results.")
        for rank, r in enumerate(results, 1):
            heading = f" › {r.heading}" if r.heading else ""
            self.stdout.write(self.style.MIGRATE_HEADING(f"{rank}. {r.document}{heading}  [{r.score:.4f}]"))
            self.stdout.write(f"   {r.source}")
            snippet = " ".join(r.text.split())
            self.stdout.write(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")
