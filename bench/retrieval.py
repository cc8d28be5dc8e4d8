"""Retrieval benchmark: ingestion throughput, search latency, HNSW recall and answer quality, on
the demo KB; and retrieval quality on a real manual with the fusion sweep (bench/manual_quality.py).

Everything runs in a throwaway database made by Django's test-database machinery (beside the
real one on the configured PostgreSQL, dropped at the end) with a temporary MEDIA_ROOT, so a
user's knowledge base is never read or changed. Prints a table; a full run also rewrites the
retrieval section of docs/benchmarks.md (a --quick smoke run writes only when given --docs).

    .venv/bin/python -m bench.retrieval [--quick] [--docs PATH] [--corpus all|demo|python-docs] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.environment import CpuMeter, setup_django, throwaway_environment
from bench.report import (
    DOCS,
    ROOT,
    command,
    machine_info,
    markdown_table,
    progress,
    text_table,
    versions,
    write_section,
)

setup_django()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from bench import corpus, manual_quality  # noqa: E402
from console.knowledge import indexing, ingestion, search  # noqa: E402
from console.knowledge.models import Chunk, Collection  # noqa: E402
from ml import embeddings  # noqa: E402
from ml.chunking import chunk_document  # noqa: E402
from ml.parsing import parse_document  # noqa: E402

KB_DIR = ROOT / "examples" / "knowledge"
QUESTIONS = ROOT / "bench" / "questions.jsonl"
SECTION = "retrieval"
REPRODUCE = (
    f"`{command('retrieval')}` (`make bench` runs it with the other benchmarks; `--quick` for a smoke run)"
)

METHODS = ("vector", "fulltext", "hybrid")
CORPORA = ("all", "demo", "python-docs")
MODES = ("end-to-end", "sql")
K = 5
RECALL_K = 10
DEMO = "demo"
# hnsw.ef_search values for recall: the configured one (SEARCH_EF, the target) and higher for contrast.
EF_SEARCH = tuple(sorted({max(settings.SEARCH_EF, RECALL_K * 4), 200, 400}))

TARGET_RATIO = 0.8
TARGET_P95_MS = 50.0
TARGET_RECALL = 0.95
TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0)  # hybrid's full-text weight, swept on the demo questions


@dataclass(frozen=True)
class Plan:
    name: str
    ingest_rounds: int
    sizes: tuple[int, ...]
    max_queries: int | None  # None: every question
    repeats: int  # timed passes over the queries per (size, method, mode)


PLANS = {
    "full": Plan("full", ingest_rounds=7, sizes=(10_000, 100_000), max_queries=None, repeats=10),
    "quick": Plan("quick", ingest_rounds=1, sizes=(2_000,), max_queries=10, repeats=2),
}


@dataclass(frozen=True)
class Question:
    question: str
    document: str


@dataclass(frozen=True)
class Ingestion:
    documents: int
    chunks: int
    mean_tokens: float
    rounds: int
    pipeline: float  # chunks/s, median over rounds
    bare: float  # one encode() over every text, as the target compares with
    bare_per_document: float  # one encode() per document, as ingestion embedded before batching

    @property
    def ratio(self) -> float:
        return self.pipeline / self.bare


@dataclass(frozen=True)
class Quality:
    hit: float
    mrr: float
    misses: tuple[str, ...]
    empty: int  # questions with no result at all


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float
    samples: int


@dataclass(frozen=True)
class Recall:
    mean: float
    worst: float
    near: float  # share of HNSW results no farther than the exact 10th result + 1%
    p50: float  # ms, SQL only, of the HNSW query at this ef_search
    p95: float
    plan: str  # indexes the query's plan uses at this ef_search


@dataclass
class Report:
    plan: Plan
    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    ingestion: Ingestion | None = None
    quality: dict[str, Quality] = field(default_factory=dict)
    questions: int = 0
    queries: int = 0
    builds: dict[int, corpus.Build] = field(default_factory=dict)
    latency: dict[tuple[int, str, str], Latency] = field(default_factory=dict)
    plans: dict[tuple[int, str], str] = field(default_factory=dict)
    recall: dict[tuple[int, int], Recall] = field(default_factory=dict)  # (chunks, ef_search)
    runtime_s: float = 0.0
    load: float = 0.0  # 1-minute load average before the run
    other_cpu: float = 0.0  # share of the CPU other work used during the run


# --- The demo questions ------------------------------------------------------------------


def load_questions() -> list[Question]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    questions = [
        Question(row["question"], row["document"]) for row in map(json.loads, filter(str.strip, lines))
    ]
    unknown = {q.document for q in questions} - {p.name for p in KB_DIR.iterdir()}
    if unknown:
        raise SystemExit(f"{QUESTIONS} names documents missing from {KB_DIR}: {', '.join(sorted(unknown))}")
    return questions


# --- 1. Ingestion throughput ---------------------------------------------------------------


def chunk_texts(files: list[Path]) -> list[list[str]]:
    """Per document, the embed_texts the pipeline embeds: the same parser and chunker, same settings."""
    count = embeddings.token_counter(settings.EMBEDDING_MODEL)
    texts = []
    for path in files:
        parsed = parse_document(path.name, path.read_bytes(), max_bytes=indexing.max_upload_bytes())
        pieces = chunk_document(
            parsed,
            count,
            max_tokens=embeddings.max_tokens(settings.EMBEDDING_MODEL),
            overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
        )
        texts.append([piece.embed_text for piece in pieces])
    return texts


def ingest(collection: Collection, files: list[Path]) -> int:
    """Register and index every file in-process, exactly as `manage.py ingest --sync` does; returns chunks."""
    summary = ingestion.IngestSummary()
    pending = ingestion.register_paths(collection, files, summary)
    ingestion.index_now(pending, summary, lambda document: None)
    if summary.failed or len(summary.indexed) != len(files):
        raise RuntimeError(f"Not every file indexed: {[(d.source, d.error) for d in summary.failed]}")
    return sum(document.chunk_count for document in summary.indexed)


def bench_ingestion(files: list[Path], plan: Plan) -> Ingestion:
    """The real pipeline against bare encode() on the same texts; rounds interleave to share drift.

    Round 0 becomes the demo collection the quality and synthetic parts use; later rounds go to
    their own collections (same file names, so the same parse) and are deleted afterwards.
    """
    per_document = chunk_texts(files)
    texts = [text for document in per_document for text in document]
    model = embeddings.get_model(settings.EMBEDDING_MODEL)

    def encode(batch: list[str]) -> None:
        model.encode(batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    encode(texts[:64])  # warm-up: first-call allocations
    rates: dict[str, list[float]] = {"pipeline": [], "bare": [], "per_document": []}
    for round_ in range(plan.ingest_rounds):
        slug = DEMO if round_ == 0 else f"ingest-{round_}"
        collection = Collection.objects.create(name=slug, slug=slug)
        chunks, seconds = timed(ingest, collection, files)
        if chunks != len(texts):
            raise RuntimeError(f"The pipeline stored {chunks} chunks; re-chunking gives {len(texts)}.")
        rates["pipeline"].append(chunks / seconds)
        rates["bare"].append(len(texts) / timed(encode, texts)[1])
        rates["per_document"].append(len(texts) / timed(lambda: [encode(d) for d in per_document])[1])
        progress(
            "ingestion round {}: {}".format(
                round_ + 1, ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
            )
        )
    Collection.objects.exclude(slug=DEMO).delete()
    return Ingestion(
        documents=len(files),
        chunks=len(texts),
        mean_tokens=float(np.mean(list(Chunk.objects.values_list("token_count", flat=True)))),
        rounds=plan.ingest_rounds,
        pipeline=float(np.median(rates["pipeline"])),
        bare=float(np.median(rates["bare"])),
        bare_per_document=float(np.median(rates["per_document"])),
    )


def timed(function, *args):
    """(result, seconds) of one call."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


# --- 4. Quality on the real demo knowledge base ---------------------------------------------


def document_rank(results: list[search.SearchResult], document: str) -> int | None:
    """1-based rank of `document` among the distinct documents of the results, in order."""
    seen: list[str] = []
    for result in results:
        if result.source not in seen:
            seen.append(result.source)
            if result.source == document:
                return len(seen)
    return None


def quality_variants() -> list[tuple[str, str, float | None]]:
    """(label, method, text weight): the three methods, then hybrid with other full-text weights."""
    variants: list[tuple[str, str, float | None]] = [(method, method, None) for method in METHODS]
    for weight in TEXT_WEIGHTS:
        if weight != settings.SEARCH_TEXT_WEIGHT:
            variants.append((f"hybrid, text weight {weight:g}", "hybrid", weight))
    return variants


def bench_quality(questions: list[Question]) -> dict[str, Quality]:
    quality = {}
    for label, method, weight in quality_variants():
        ranks, misses, empty = [], [], 0
        for q in questions:
            results = search.search(q.question, k=K, method=method, text_weight=weight)
            empty += not results
            rank = document_rank(results, q.document)
            ranks.append(rank)
            if rank is None:
                misses.append(q.question)
        quality[label] = Quality(
            hit=sum(r is not None for r in ranks) / len(ranks),
            mrr=sum(1 / r for r in ranks if r) / len(ranks),
            misses=tuple(misses),
            empty=empty,
        )
    return quality


# --- 2. Latency and 3. recall ---------------------------------------------------------------


def bench_latency(queries: list[Question], vectors: list[list[float]], repeats: int) -> dict:
    """p50/p95 of search.search(k=5): end to end (query embedding + SQL) and SQL only.

    Every (method, mode) runs for each query in turn, so a passing burst of other work on the
    machine lands on all of them alike instead of on whichever happened to be running.
    """
    cases = [(method, mode) for method in METHODS for mode in MODES]
    samples: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for repeat in range(repeats + 1):  # pass 0 warms caches and plans, untimed
        for q, vector in zip(queries, vectors, strict=True):
            for method, mode in cases:
                started = time.perf_counter()
                search.search(
                    q.question, k=K, method=method, query_embedding=vector if mode == "sql" else None
                )
                if repeat:
                    samples[method, mode].append((time.perf_counter() - started) * 1000)
    latency = {}
    for case, times in samples.items():
        p50, p95 = np.percentile(times, [50, 95])
        latency[case] = Latency(float(p50), float(p95), len(times))
    return latency


def query_plan(q: Question, vector: list[float], method: str, *, k: int = K) -> str:
    """Which indexes PostgreSQL's plan for search.search's own query uses.

    EXPLAIN runs inside search's transaction, after its SET LOCALs: pgvector's cost estimate
    grows with hnsw.ef_search, so the plan can change with it.
    """
    plans = []

    def explain_first(execute, sql, params, many, context):
        if "knowledge_chunk" in sql:
            execute("EXPLAIN " + sql, params, many, context)
            plans.append("\n".join(row[0] for row in context["cursor"].fetchall()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain_first):
        search.search(q.question, k=k, method=method, query_embedding=vector)
    indexes = (("chunk_embedding_hnsw", "HNSW"), ("chunk_search_vector_gin", "GIN"))
    return "+".join(label for name, label in indexes if name in plans[-1]) or "seq scan"


def vector_top(q: Question, vector: list[float], *, exact: bool = False) -> list[tuple[int, float]]:
    """search.search's vector top-10 as (chunk id, cosine distance); exact: index scans off."""
    with transaction.atomic():
        if exact:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_indexscan = off")
        results = search.search(q.question, k=RECALL_K, method="vector", query_embedding=vector)
    return [(r.chunk_id, 1 - r.similarity) for r in results]


def bench_recall(queries: list[Question], vectors: list[list[float]]) -> dict[int, Recall]:
    """Overlap of the HNSW top-10 with the exact top-10, at the configured ef_search and higher.

    `near` tells apart misses that are near-ties (a result as close as the one it displaced)
    from real misses.
    """
    exact = [vector_top(q, vector, exact=True) for q, vector in zip(queries, vectors, strict=True)]
    recall = {}
    for ef in EF_SEARCH:
        recalls, near, times = [], [], []
        with override_settings(SEARCH_EF=ef):
            for q, vector, truth in zip(queries, vectors, exact, strict=True):
                approx, seconds = timed(vector_top, q, vector)
                times.append(seconds * 1000)
                recalls.append(len({i for i, _ in approx} & {i for i, _ in truth}) / len(truth))
                near.append(sum(d <= truth[-1][1] * 1.01 for _, d in approx) / len(truth))
            plan = query_plan(queries[0], vectors[0], "vector", k=RECALL_K)
        p50, p95 = np.percentile(times, [50, 95])
        recall[ef] = Recall(
            float(np.mean(recalls)),
            float(np.min(recalls)),
            float(np.mean(near)),
            float(p50),
            float(p95),
            plan,
        )
    return recall


# --- Report ---------------------------------------------------------------------------------


def size_label(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def targets(report: Report) -> list[list[str]]:
    """[what, goal, measured, PASS/FAIL] for every target."""
    rows = []

    def check(what: str, goal: str, measured: str, ok: bool) -> None:
        rows.append([what, goal, measured, "PASS" if ok else "FAIL"])

    ratio = report.ingestion.ratio
    check("ingestion vs bare encode", f">= {TARGET_RATIO:.2f}x", f"{ratio:.2f}x", ratio >= TARGET_RATIO)
    largest = max(report.plan.sizes)
    for method in METHODS:
        p95 = report.latency[largest, method, "end-to-end"].p95
        what = f"{method} p95 end-to-end @ {size_label(largest)}"
        check(what, f"<= {TARGET_P95_MS:.0f} ms", f"{p95:.1f} ms", p95 <= TARGET_P95_MS)
    for size in report.plan.sizes:
        recall = report.recall[size, EF_SEARCH[0]]
        what = f"HNSW recall@{RECALL_K} @ {size_label(size)}, ef_search {EF_SEARCH[0]}"
        measured = f"{recall.mean:.3f}" + ("" if "HNSW" in recall.plan else " (seq scan)")
        check(what, f">= {TARGET_RECALL}", measured, recall.mean >= TARGET_RECALL)
    quality = report.quality
    for metric, label in (("hit", "hit@5"), ("mrr", "MRR")):
        best = max(getattr(quality["vector"], metric), getattr(quality["fulltext"], metric))
        hybrid = getattr(quality["hybrid"], metric)
        check(
            f"hybrid {label} >= best single method", f">= {best:.3f}", f"{hybrid:.3f}", hybrid >= best - 1e-9
        )
    return rows


def notes(report: Report) -> list[str]:
    """Plain observations the numbers call for, so a reader of the page need not rediscover them."""
    found = []
    ing, fulltext = report.ingestion, report.quality["fulltext"]
    if ing.ratio < TARGET_RATIO and ing.bare_per_document < 0.95 * ing.bare:
        found.append(
            f"Bare encode() over one call per document gives {ing.bare_per_document:.1f} chunks/s, "
            f"against {ing.bare:.1f} for one call over all texts, which sorts every text by length and "
            f"so pads less; the pipeline embeds up to {settings.INGEST_BATCH_DOCUMENTS} documents per pass."
        )
    if fulltext.empty:
        found.append(
            f"Full text finds nothing at all for {fulltext.empty} of {report.questions} questions: "
            "none of the question's words occurs in the knowledge base."
        )
    for (size, ef), recall in report.recall.items():
        if ef == EF_SEARCH[0] and recall.mean < TARGET_RECALL:
            found.append(
                f"At {size_label(size)} and ef_search {ef}, {recall.near:.1%} of the HNSW top-{RECALL_K} lie "
                f"within 1% of the exact {RECALL_K}th distance: most misses are near-ties among the "
                "synthetic chunks, which crowd around the real ones they were mixed from."
            )
    for size in report.plan.sizes:
        scans = [ef for (at, ef), recall in report.recall.items() if at == size and "HNSW" not in recall.plan]
        if scans:
            found.append(
                f"At {size_label(size)}, ef_search {', '.join(map(str, scans))} makes PostgreSQL choose an exact "
                "sequential scan over HNSW (pgvector's cost estimate grows with ef_search): recall 1, "
                "but see the time."
            )
    if report.other_cpu > 0.1:
        found.append(
            f"Other processes used {report.other_cpu:.0%} of the CPU during the run: wall-clock numbers, "
            "end-to-end latency above all (torch spreads a query embedding over every core), are worse "
            "than on an idle machine."
        )
    hybrid = report.quality["hybrid"]
    for method in ("vector", "fulltext"):
        lost = sorted(set(hybrid.misses) - set(report.quality[method].misses))
        if lost:
            found.append(f"Found by {method} but missed by hybrid: " + "; ".join(lost))
    return found


def sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as (title, headers, rows) tables, shared by the console and Markdown output."""
    ing = report.ingestion
    ingestion_rows = [
        ["pipeline: ingestion.register_paths + index_now (ingest --sync)", f"{ing.pipeline:.1f}"],
        ["bare SentenceTransformer.encode (batch 32, normalised)", f"{ing.bare:.1f}"],
        ["ratio (target)", f"{ing.ratio:.2f}x"],
        [
            "for comparison: bare encode, one call per document (ingestion before batching)",
            f"{ing.bare_per_document:.1f}",
        ],
    ]
    latency_rows = []
    for size in report.plan.sizes:
        for method in METHODS:
            e2e, sql = (report.latency[size, method, mode] for mode in MODES)
            latency_rows.append(
                [
                    size_label(size),
                    method,
                    f"{e2e.p50:.1f}",
                    f"{e2e.p95:.1f}",
                    f"{sql.p50:.1f}",
                    f"{sql.p95:.1f}",
                    report.plans[size, method],
                ]
            )
    build_rows = [
        [
            size_label(size),
            f"{b.load_s:.1f}",
            f"{b.index_s['chunk_search_vector_gin']:.1f}",
            f"{b.index_s['chunk_embedding_hnsw']:.1f}",
        ]
        for size, b in report.builds.items()
    ]
    recall_rows = [
        [
            size_label(size),
            str(ef),
            f"{r.mean:.3f}",
            f"{r.worst:.2f}",
            f"{r.near:.3f}",
            f"{r.p50:.1f}",
            f"{r.p95:.1f}",
            r.plan,
        ]
        for (size, ef), r in report.recall.items()
    ]
    quality_rows = [
        [
            label if label != "hybrid" else f"hybrid (SEARCH_TEXT_WEIGHT {settings.SEARCH_TEXT_WEIGHT:g})",
            f"{quality.hit:.3f}",
            f"{quality.mrr:.3f}",
            str(len(quality.misses)),
            str(quality.empty),
        ]
        for label, quality in report.quality.items()
    ]
    samples = report.latency[report.plan.sizes[0], "vector", "sql"].samples
    return [
        (
            f"Ingestion of the demo KB ({ing.documents} documents, {ing.chunks} chunks, "
            f"mean {ing.mean_tokens:.0f} tokens), median of {ing.rounds} round(s)",
            ["", "chunks/s"],
            ingestion_rows,
        ),
        (
            f"Search latency, ms (search.search, k={K}; {report.queries} questions x {report.plan.repeats} = {samples} samples each)",
            ["chunks", "method", "e2e p50", "e2e p95", "SQL p50", "SQL p95", "indexes in plan"],
            latency_rows,
        ),
        ("Synthetic corpus build, s", ["chunks", "load (generate+COPY+tsvector)", "GIN", "HNSW"], build_rows),
        (
            f"HNSW recall@{RECALL_K} against exact search ({report.queries} questions; ef_search "
            f"{EF_SEARCH[0]} is the configured SEARCH_EF, the others for contrast; near = results within "
            "1% of the exact 10th distance)",
            ["chunks", "ef_search", "recall", "worst query", "near", "SQL p50 ms", "SQL p95 ms", "plan"],
            recall_rows,
        ),
        (
            f"Quality on the real demo KB ({report.questions} questions, k={K}, document-level rank)",
            ["method", "hit@5", "MRR", "misses", "no results"],
            quality_rows,
        ),
        ("Targets", ["target", "goal", "measured", "result"], targets(report)),
    ]


def render_text(report: Report) -> str:
    m, v = report.machine, report.versions
    parts = [
        f"Retrieval benchmark ({report.plan.name}): {m['cores']} cores {m['cpu']}, "
        f"PostgreSQL {v['PostgreSQL']}, pgvector {v['pgvector']}, {report.runtime_s / 60:.1f} min, "
        f"load average {report.load:.1f} before, other processes' CPU share {report.other_cpu:.0%} during"
    ]
    for title, headers, rows in sections(report):
        parts.append(f"\n{title}\n{text_table(headers, rows)}")
    parts += ["\nNotes", *(f"- {note}" for note in notes(report))]
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    m, v = report.machine, report.versions
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "## Retrieval",
        "",
        f"Measured {date} by `python -m bench.retrieval` ({report.plan.name} run, {report.runtime_s / 60:.1f} min in all).",
        "",
        f"- Machine: {m['cores']} cores, {m['cpu']}, {m['memory']} RAM; load average {report.load:.1f} "
        f"before the run, other processes used {report.other_cpu:.0%} of the CPU during it",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in v.items()),
        "- Data: ingestion and quality use the real demo KB (`examples/knowledge`, questions in "
        "`bench/questions.jsonl`). Latency and recall use the demo chunks plus synthetic ones: "
        "each mixes three real chunks (their sentences interleaved; their embeddings weighted, "
        f"plus noise, re-normalised), {corpus.CHUNKS_PER_SYNTHETIC_DOCUMENT} per document, loaded by COPY, "
        f"then GIN and HNSW ({corpus.hnsw_parameters()}) built from the migration's own definitions.",
        "- End-to-end latency is `search.search(question, k=5, method=...)` including the query "
        "embedding on the CPU; SQL is the same call with a precomputed `query_embedding`. "
        "Recall compares the same vector query with index scans off (exact).",
        f"- Reproduce: {REPRODUCE}.",
    ]
    for title, headers, rows in sections(report):
        lines += ["", f"### {title}", "", markdown_table(headers, rows)]
    lines += ["", "### Notes", "", *(f"- {note}" for note in notes(report))]
    return "\n".join(lines)


# --- Main -----------------------------------------------------------------------------------


def run(plan: Plan, report: Report) -> None:
    files = sorted(p for p in KB_DIR.iterdir() if p.is_file() and indexing.is_supported(p))
    questions = load_questions()
    queries = questions[: plan.max_queries]
    report.questions, report.queries = len(questions), len(queries)
    report.machine = machine_info()
    report.versions = versions(
        "PostgreSQL",
        "pgvector",
        "shared_buffers",
        "Python",
        "Django",
        "torch",
        "sentence-transformers",
        "embedding model",
    )
    progress(f"ingesting {len(files)} demo documents, {plan.ingest_rounds} round(s)")
    report.ingestion = bench_ingestion(files, plan)
    progress("quality on the demo KB")
    report.quality = bench_quality(questions)
    seed = corpus.load_seed()
    vectors = [search.embed_query(q.question) for q in queries]
    rng, nprng = random.Random(7), np.random.default_rng(7)
    for size in plan.sizes:
        progress(f"building a {size_label(size)}-chunk corpus")
        report.builds[size] = corpus.grow_corpus(size, seed, rng, nprng)
        progress(f"latency and recall at {size_label(size)}")
        for method in METHODS:
            report.plans[size, method] = query_plan(queries[0], vectors[0], method)
        for (method, mode), latency in bench_latency(queries, vectors, plan.repeats).items():
            report.latency[size, method, mode] = latency
        for ef, recall in bench_recall(queries, vectors).items():
            report.recall[size, ef] = recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (2k chunks, few queries)")
    parser.add_argument(
        "--docs",
        type=Path,
        help=f"Markdown file to update (default: {DOCS.relative_to(ROOT)} on a full run)",
    )
    parser.add_argument(
        "--corpus",
        choices=CORPORA,
        default="all",
        help="the demo KB (ingestion, latency, recall, quality), the Python manual (quality and the "
        "fusion sweep; a quick run skips it), or both (default)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="re-ingest the Python manual even if its cached database is current",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still drop the throwaway database
    docs = args.docs or (None if args.quick else DOCS)
    if args.corpus in ("all", "demo"):
        run_demo(PLANS["quick" if args.quick else "full"], docs)
    if args.corpus == "python-docs" or (args.corpus == "all" and not args.quick):
        manual_quality.main(docs=docs, rebuild=args.rebuild)


def run_demo(plan: Plan, docs: Path | None) -> None:
    report = Report(plan=plan)
    started = time.monotonic()
    report.load = os.getloadavg()[0]
    with throwaway_environment("retrieval_bench"):
        meter = CpuMeter()
        run(plan, report)
        report.other_cpu = meter.other_share()
    report.runtime_s = time.monotonic() - started
    print(render_text(report))
    if docs:
        write_section(docs, SECTION, render_markdown(report))
        print(f"\nWrote {docs}")


if __name__ == "__main__":
    main()
