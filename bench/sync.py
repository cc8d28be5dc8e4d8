"""Source sync: first sync of a local website against `ingest --sync` of the same pages as files, and
a re-sync with nothing changed.

A generated site of --pages HTML pages (title, headings, a few hundred words each, a nav and a
footer) is served by a local HTTP server with a sitemap (no <lastmod>) and ETags, so a re-sync asks
for every page conditionally and gets 304s. The same pages are written as .html files and ingested
in-process, in the same run and throwaway database. Targets: the first sync takes pages at >= 0.8x
the rate of the file ingest; the re-sync takes < 5 % of the first sync's time.

    .venv/bin/python -m bench.sync [--pages 2000] [--docs docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.environment import CpuMeter, setup_django, throwaway_environment
from bench.report import (
    DOCS,
    ROOT,
    command,
    machine_info,
    markdown_table,
    progress,
    text_table,
    write_section,
)

SECTION = "sync"
TOPICS = [
    "deploys",
    "on-call",
    "expenses",
    "VPN",
    "backups",
    "releases",
    "reviews",
    "holidays",
    "laptops",
    "incidents",
]


def vocabulary() -> list[str]:
    words: list[str] = []
    for file in sorted((ROOT / "examples" / "knowledge").glob("*.md")):
        words += [w.strip("#*`()[],.:;") for w in file.read_text().split()]
    return [w for w in words if w.isalpha()] or ["policy", "team", "deploy"]


def make_pages(count: int, seed: int = 13) -> dict[str, bytes]:
    """Page path → HTML, deterministic for a seed."""
    rng = random.Random(seed)
    words = vocabulary()

    def paragraph() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(40, 90))).capitalize() + "."

    pages = {}
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        title = f"{topic.capitalize()} handbook, part {n}"
        sections = "".join(
            f"<h2>{rng.choice(words).capitalize()} {rng.choice(words)}</h2><p>{paragraph()}</p><p>{paragraph()}</p>"
            for _ in range(rng.randint(2, 4))
        )
        html = (
            f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a> · <a href='/docs/'>Docs</a>"
            f"</nav><main><h1>{title}</h1><p>{paragraph()}</p>{sections}</main><footer>Northwind</footer></body></html>"
        )
        pages[f"/docs/page-{n}.html"] = html.encode()
    return pages


def serve(pages: dict[str, bytes]) -> tuple[ThreadingHTTPServer, str]:
    etags = {path: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for path, body in pages.items()}
    holder: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def do_GET(self):
            if self.path == "/sitemap.xml":
                body, kind, etag = holder["sitemap"].encode(), "application/xml", ""
            elif self.path in pages:
                body, kind, etag = pages[self.path], "text/html; charset=utf-8", etags[self.path]
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            else:
                body, kind, etag = b"not found", "text/plain", ""
            self.send_response(200 if kind != "text/plain" else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_port}"
    holder["sitemap"] = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(f"<url><loc>{url}{path}</loc></url>" for path in pages)
        + "</urlset>"
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url


@dataclass
class Result:
    pages: int
    ingest_s: float = 0.0
    ingest_chunks: int = 0
    sync_s: float = 0.0
    sync_chunks: int = 0
    resync_s: float = 0.0
    resync_unchanged: int = 0
    other_cpu: float = 0.0

    @property
    def ratio(self) -> float:
        return (self.pages / self.sync_s) / (self.pages / self.ingest_s)

    @property
    def resync_share(self) -> float:
        return self.resync_s / self.sync_s


def run(count: int) -> Result:
    from django.conf import settings
    from django.db.models import Sum

    from console.knowledge import ingestion, syncing
    from console.knowledge.models import Collection, Document, Source
    from console.knowledge.search import embed_query

    settings.SYNC_REQUESTS_PER_SECOND = 0  # a local server: no politeness needed
    pages = make_pages(count)
    result = Result(pages=count)
    embed_query("warm the embedding model up")
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as folder:
        for path, body in pages.items():
            (Path(folder) / Path(path).name).write_bytes(body)
        files = Collection.objects.create(name="files", slug="files")
        progress(f"ingest --sync of {count} files")
        started = time.monotonic()
        summary = ingestion.IngestSummary()
        pending = ingestion.register_paths(files, [Path(folder)], summary)
        ingestion.index_now(pending, summary, lambda _: None)
        result.ingest_s = time.monotonic() - started
        result.ingest_chunks = (
            Document.objects.filter(collection=files).aggregate(n=Sum("chunk_count"))["n"] or 0
        )

    server, url = serve(pages)
    try:
        site = Collection.objects.create(name="site", slug="site")
        source = Source.objects.create(
            name="site", kind="website", collection=site, options={"sitemap": f"{url}/sitemap.xml"}
        )
        progress(f"first sync of the {count}-page website")
        started = time.monotonic()
        first = syncing.sync_source(source.pk).sync
        result.sync_s = time.monotonic() - started
        if first.added != count:
            raise RuntimeError(f"the first sync added {first.added} of {count} pages: {first.error}")
        result.sync_chunks = (
            Document.objects.filter(collection=site).aggregate(n=Sum("chunk_count"))["n"] or 0
        )
        progress("re-sync with nothing changed")
        started = time.monotonic()
        again = syncing.sync_source(source.pk).sync
        result.resync_s = time.monotonic() - started
        result.resync_unchanged = again.unchanged
    finally:
        server.shutdown()
        server.server_close()
    return result


def rows(result: Result) -> list[list[str]]:
    n = result.pages
    return [
        [
            "`ingest --sync`, files",
            f"{result.ingest_s:.1f}",
            f"{n / result.ingest_s:.1f}",
            str(result.ingest_chunks),
            "",
        ],
        [
            "website source, first sync",
            f"{result.sync_s:.1f}",
            f"{n / result.sync_s:.1f}",
            str(result.sync_chunks),
            f"{result.ratio:.2f}x the file rate (target >= 0.8x)",
        ],
        [
            "website source, nothing changed",
            f"{result.resync_s:.1f}",
            f"{n / result.resync_s:.0f}",
            "",
            f"{result.resync_share:.1%} of the first sync (target < 5 %); {result.resync_unchanged} unchanged",
        ],
    ]


HEADERS = ["run", "s", "pages/s", "chunks", "against the target"]


def render_markdown(result: Result, args: argparse.Namespace) -> str:
    machine = machine_info()
    full = result.pages >= 2000
    return "\n".join(
        [
            "## Source sync: a website against `ingest` of the same pages",
            "",
            f"`{command('sync', '--pages', str(result.pages))}` on {machine['cores']} cores ({machine['cpu']}, "
            f"{machine['memory']}); other processes took {result.other_cpu:.0%} of the machine's CPU meanwhile."
            + (
                ""
                if full
                else " **A reduced run** (the issue's size is 2,000 pages): the machine was shared."
            ),
            "",
            markdown_table(HEADERS, rows(result)),
            "",
            "The site is served from 127.0.0.1 with a sitemap without `<lastmod>` and ETags, so the re-sync asks "
            "for every page conditionally and each answers 304. A website page is indexed from its main text "
            "(trafilatura, Markdown), a file from its whole HTML (its nav and footer are short, so the chunks come out alike).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--docs", type=Path, default=DOCS, help="Markdown file to update; '-' for none")
    args = parser.parse_args()
    setup_django()
    with throwaway_environment("sync_bench"):
        meter = CpuMeter()
        result = run(args.pages)
        result.other_cpu = meter.other_share()
    print(text_table(HEADERS, rows(result)))
    if str(args.docs) != "-":
        write_section(args.docs, SECTION, render_markdown(result, args))
        print(f"\nWrote {args.docs}")


if __name__ == "__main__":
    main()
