"""Retrieval quality on a real manual, and the fusion settings swept on it.

The Python 3.11 manual (bench/python_docs.py) is searched with the labelled questions of
bench/data/python_docs_questions.jsonl: vector, full text, hybrid, and hybrid with the per-document
cap, each scored by hit@5, MRR@10 and nDCG@10 over k=10 results (a hit is a chunk of a labelled
page). Then hybrid is swept over SEARCH_TEXT_WEIGHT, SEARCH_RRF_K and SEARCH_CHUNKS_PER_DOCUMENT,
on the manual and on the demo KB alike, so a default chosen on real data is seen not to cost the
demo anything. Run through `python -m bench.retrieval --corpus python-docs`.

Import after django.setup() (bench.environment.setup_django).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from bench import python_docs, ranking
from bench.environment import throwaway_environment
from bench.report import DOCS, ROOT, command, machine_info, markdown_table, progress, text_table, versions
from console.knowledge import indexing, search
from console.knowledge.models import Chunk, Document

SECTION = "retrieval-python-docs"
RESULTS = ROOT / "bench" / "results" / "retrieval_python_docs.json"
DEMO_KB = ROOT / "examples" / "knowledge"
DEMO_QUESTIONS = ROOT / "bench" / "questions.jsonl"
REPRODUCE = f"`{command('retrieval', '--corpus', 'python-docs')}` (`--rebuild` re-ingests the manual)"

K = 10  # results asked of search, as the issue measured
HIT_DEPTH, RANK_DEPTH = 5, 10
DEMO_K = 5  # the demo's own report: k=5, ranks over distinct documents

SWEEP_TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)
SWEEP_RRF_K = (10, 30, 60)
SWEEP_CAPS = (1, 2, 3)
NO_CAP = 0  # SEARCH_CHUNKS_PER_DOCUMENT that lets one document fill the results
# The engine's settings before issue #11, the baseline "no loss on the demo" is checked against.
BEFORE = {"SEARCH_TEXT_WEIGHT": 0.2, "SEARCH_RRF_K": 60, "SEARCH_CHUNKS_PER_DOCUMENT": NO_CAP}

TARGET_TEXT_RATIO = 0.8  # full text's hit@5 against vector's
TARGET_MARGIN = 0.03  # hybrid over the better leg, on hit@5 and MRR


@dataclass(frozen=True)
class Scores:
    hit: float  # hit@5
    mrr: float  # MRR@10
    ndcg: float  # nDCG@10
    ms: float  # mean search.search time per question, query embedding precomputed
    ranks: tuple[int | None, ...]  # per question, the first labelled result's rank within 10


@dataclass(frozen=True)
class Fusion:
    """One point of the sweep: hybrid with these settings."""

    text_weight: float
    rrf_k: int
    cap: int

    def overrides(self) -> dict[str, Any]:
        return {
            "SEARCH_TEXT_WEIGHT": self.text_weight,
            "SEARCH_RRF_K": self.rrf_k,
            "SEARCH_CHUNKS_PER_DOCUMENT": self.cap,
        }


@dataclass
class ManualReport:
    pages: int = 0
    chunks: int = 0
    failed: list[str] = field(default_factory=list)
    built: bool = False
    ingest_s: float = 0.0
    questions: list[python_docs.Labelled] = field(default_factory=list)
    methods: dict[str, Scores] = field(default_factory=dict)
    sweep: dict[Fusion, Scores] = field(default_factory=dict)
    demo: dict[Fusion, Scores] = field(default_factory=dict)
    demo_legs: dict[str, Scores] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    runtime_s: float = 0.0


def current_fusion() -> Fusion:
    return Fusion(settings.SEARCH_TEXT_WEIGHT, settings.SEARCH_RRF_K, settings.SEARCH_CHUNKS_PER_DOCUMENT)


def method_variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """label: (method, setting overrides) of the main table."""
    cap = settings.SEARCH_CHUNKS_PER_DOCUMENT
    no_cap = {"SEARCH_CHUNKS_PER_DOCUMENT": NO_CAP}
    return {
        "vector, no per-document cap": ("vector", no_cap),
        "full text, no per-document cap": ("fulltext", no_cap),
        "hybrid, no per-document cap": ("hybrid", no_cap),
        f"vector, at most {cap} chunk(s) per document": ("vector", {}),
        f"full text, at most {cap} chunk(s) per document": ("fulltext", {}),
        f"hybrid, at most {cap} chunk(s) per document": ("hybrid", {}),
    }


# --- Scoring ------------------------------------------------------------------------------------


def score(
    questions: Sequence[python_docs.Labelled],
    vectors: Sequence[list[float]],
    method: str,
    overrides: dict[str, Any],
    *,
    k: int = K,
    by_document: bool = False,
) -> Scores:
    """Search every question with these settings and score the ranked sources.

    by_document: ranks over distinct documents (the demo report's way) instead of chunks.
    """
    hits, rrs, ndcgs, ranks, seconds = [], [], [], [], 0.0
    with override_settings(**overrides):
        for q, vector in zip(questions, vectors, strict=True):
            started = time.perf_counter()
            results = search.search(q.question, k=k, method=method, query_embedding=vector)
            seconds += time.perf_counter() - started
            sources = [r.source for r in results]
            if by_document:
                sources = ranking.distinct(sources)
            relevant = set(q.pages)
            hits.append(ranking.hit(sources, relevant, depth=HIT_DEPTH))
            rrs.append(ranking.reciprocal_rank(sources, relevant, depth=RANK_DEPTH))
            ndcgs.append(ranking.ndcg(sources, relevant, depth=RANK_DEPTH))
            ranks.append(ranking.first_rank(sources, relevant, depth=RANK_DEPTH))
    n = len(questions)
    return Scores(sum(hits) / n, sum(rrs) / n, sum(ndcgs) / n, seconds * 1000 / n, tuple(ranks))


def sweep_points() -> list[Fusion]:
    points = [Fusion(*p) for p in itertools.product(SWEEP_TEXT_WEIGHTS, SWEEP_RRF_K, SWEEP_CAPS)]
    extra = [f for f in (current_fusion(), Fusion(**_before())) if f not in points]
    return points + extra


def _before() -> dict[str, Any]:
    return {
        "text_weight": BEFORE["SEARCH_TEXT_WEIGHT"],
        "rrf_k": BEFORE["SEARCH_RRF_K"],
        "cap": BEFORE["SEARCH_CHUNKS_PER_DOCUMENT"],
    }


def sweep(
    questions: Sequence[python_docs.Labelled], vectors: Sequence[list[float]], *, by_document: bool = False
) -> dict[Fusion, Scores]:
    k = DEMO_K if by_document else K
    return {
        point: score(questions, vectors, "hybrid", point.overrides(), k=k, by_document=by_document)
        for point in sweep_points()
    }


def best(report: ManualReport) -> Fusion:
    """The sweep's best point on the manual by hit@5 + MRR@10, then nDCG@10, among those that keep
    the demo's hybrid hit@5 and MRR at least where they were before #11."""
    before = report.demo[Fusion(**_before())]
    safe = [
        f
        for f in report.sweep
        if report.demo[f].hit >= before.hit and report.demo[f].mrr >= before.mrr - 1e-9
    ]
    return max(
        safe, key=lambda f: (round(report.sweep[f].hit + report.sweep[f].mrr, 9), report.sweep[f].ndcg)
    )


# --- The run --------------------------------------------------------------------------------------


def run(report: ManualReport, *, rebuild: bool = False) -> None:
    """Measure on the cached manual database, then the demo check in a throwaway one."""
    started = time.monotonic()
    pages = python_docs.manual_pages()
    report.questions = python_docs.load_questions()
    report.pages = len(pages)

    def build() -> None:
        progress(f"ingesting {len(pages)} pages of the Python manual (minutes; kept for later runs)")
        began = time.monotonic()
        python_docs.ingest_pages(python_docs.COLLECTION, pages)
        report.ingest_s = time.monotonic() - began

    with python_docs.cached_database(python_docs.fingerprint(pages), build, rebuild=rebuild) as built:
        report.built = built
        report.versions = versions("PostgreSQL", "pgvector", "embedding model")
        report.chunks = Chunk.objects.count()
        report.failed = [
            f"{d.source}: {d.error}" for d in Document.objects.filter(status=Document.Status.FAILED)
        ]
        vectors = [search.embed_query(q.question) for q in report.questions]
        progress(f"{len(report.questions)} questions over {report.chunks} chunks: the methods")
        for label, (method, overrides) in method_variants().items():
            report.methods[label] = score(report.questions, vectors, method, overrides)
        progress(f"sweeping {len(sweep_points())} fusion settings on the manual")
        report.sweep = sweep(report.questions, vectors)
    measure_demo(report)
    report.runtime_s = time.monotonic() - started


def measure_demo(report: ManualReport) -> None:
    """The demo's legs and the same sweep on the demo KB, in a throwaway database of its own (so
    its full-text statistics are the demo's alone, as in a team's own deployment)."""
    with throwaway_environment("retrieval_bench_demo"):
        progress("the same sweep on the demo KB")
        demo = demo_questions()
        files = sorted(p for p in DEMO_KB.iterdir() if p.is_file() and indexing.is_supported(p))
        python_docs.ingest_pages("demo", [(p.name, p) for p in files])
        vectors = [search.embed_query(q.question) for q in demo]
        for method in ("vector", "fulltext"):
            report.demo_legs[method] = score(demo, vectors, method, {}, k=DEMO_K, by_document=True)
        report.demo = sweep(demo, vectors, by_document=True)


def demo_questions() -> list[python_docs.Labelled]:
    rows = [
        json.loads(line) for line in DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return [python_docs.Labelled(row["question"], (row["document"],)) for row in rows]


# --- Report ---------------------------------------------------------------------------------------


def legs(report: ManualReport) -> tuple[Scores, Scores, Scores]:
    """(vector, full text, hybrid) as configured: the last three rows of the main table."""
    vector, fulltext, hybrid = list(report.methods.values())[-3:]
    return vector, fulltext, hybrid


def targets(report: ManualReport) -> list[list[str]]:
    """[what, goal, measured, PASS/FAIL] for the issue's targets on the manual and the demo."""
    rows = []

    def check(what: str, goal: float, measured: float) -> None:
        ok = measured >= goal - 1e-9
        rows.append([what, f">= {goal:.3f}", f"{measured:.3f}", "PASS" if ok else "FAIL"])

    vector, fulltext, hybrid = legs(report)
    check("manual: full text hit@5 >= 0.8x vector's", TARGET_TEXT_RATIO * vector.hit, fulltext.hit)
    for metric, label in (("hit", "hit@5"), ("mrr", "MRR@10")):
        better = max(getattr(vector, metric), getattr(fulltext, metric))
        check(
            f"manual: hybrid {label} >= better leg + {TARGET_MARGIN}",
            better + TARGET_MARGIN,
            getattr(hybrid, metric),
        )
    now, before = report.demo[current_fusion()], report.demo[Fusion(**_before())]
    for metric, label in (("hit", "hit@5"), ("mrr", "MRR")):
        check(f"demo: hybrid {label} no lower than before #11", getattr(before, metric), getattr(now, metric))
    return rows


def fusion_label(point: Fusion) -> list[str]:
    return [f"{point.text_weight:g}", str(point.rrf_k), str(point.cap) if point.cap else "none"]


def sweep_rows(report: ManualReport) -> list[list[str]]:
    chosen, top, before = current_fusion(), best(report), Fusion(**_before())
    rows = []
    for point, scores in report.sweep.items():
        demo = report.demo[point]
        marks = [
            name
            for name, p in (("default", chosen), ("best, demo kept", top), ("before #11", before))
            if p == point
        ]
        rows.append(
            [
                *fusion_label(point),
                f"{scores.hit:.3f}",
                f"{scores.mrr:.3f}",
                f"{scores.ndcg:.3f}",
                f"{demo.hit:.3f}",
                f"{demo.mrr:.3f}",
                ", ".join(marks),
            ]
        )
    return rows


def sections(report: ManualReport) -> list[tuple[str, list[str], list[list[str]]]]:
    n = len(report.questions)
    method_rows = [
        [label, f"{s.hit:.3f}", f"{s.mrr:.3f}", f"{s.ndcg:.3f}", f"{s.ms:.1f}"]
        for label, s in report.methods.items()
    ]
    demo_rows = [[label, f"{s.hit:.3f}", f"{s.mrr:.3f}"] for label, s in report.demo_legs.items()]
    demo_rows.append(
        ["hybrid, defaults", *(f"{getattr(report.demo[current_fusion()], m):.3f}" for m in ("hit", "mrr"))]
    )
    return [
        (
            f"The Python 3.11 manual: {report.pages} pages, {report.chunks} chunks, {n} questions "
            f"(search k={K}; a hit is a chunk of a labelled page; defaults: {defaults_text()})",
            ["method", "hit@5", "MRR@10", "nDCG@10", "ms/query (SQL)"],
            method_rows,
        ),
        (
            f"Fusion sweep: hybrid on the manual ({n} questions) and on the demo KB "
            f"({len(demo_questions())} questions, k={DEMO_K}, ranks over documents)",
            ["text weight", "RRF k", "cap", "hit@5", "MRR@10", "nDCG@10", "demo hit@5", "demo MRR", ""],
            sweep_rows(report),
        ),
        (f"The demo KB's legs (k={DEMO_K}, ranks over documents)", ["method", "hit@5", "MRR"], demo_rows),
        ("Targets", ["target", "goal", "measured", "result"], targets(report)),
    ]


def defaults_text() -> str:
    return ", ".join(f"{name} {getattr(settings, name)}" for name in BEFORE)


def misses(report: ManualReport) -> list[str]:
    """Plain observations: the questions no method finds, and those one leg finds but hybrid loses."""
    questions = report.questions
    vector, fulltext, hybrid = legs(report)
    found = []

    def missed(scores: Scores) -> set[int]:
        return {i for i, rank in enumerate(scores.ranks) if rank is None or rank > HIT_DEPTH}

    nowhere = missed(vector) & missed(fulltext) & missed(hybrid)
    if nowhere:
        found.append(
            f"No method has a labelled page in its top {HIT_DEPTH} for: " + _quoted(questions, nowhere)
        )
    for name, leg in (("vector", vector), ("full text", fulltext)):
        lost = missed(hybrid) - missed(leg)
        if lost:
            found.append(f"In {name}'s top {HIT_DEPTH} but not in hybrid's: " + _quoted(questions, lost))
    if report.failed:
        found.append(f"{len(report.failed)} page(s) failed to ingest: " + "; ".join(report.failed))
    return found


def _quoted(questions: Sequence[python_docs.Labelled], indexes: set[int]) -> str:
    return "; ".join(
        f"\u201c{questions[i].question}\u201d ({', '.join(questions[i].pages)})" for i in sorted(indexes)
    )


def render_text(report: ManualReport) -> str:
    parts = [f"Retrieval quality on the Python 3.11 manual: {report.runtime_s / 60:.1f} min"]
    for title, headers, rows in sections(report):
        parts.append(f"\n{title}\n{text_table(headers, rows)}")
    parts += ["\nNotes", *(f"- {note}" for note in misses(report))]
    return "\n".join(parts)


def render_markdown(report: ManualReport) -> str:
    m = machine_info()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "## Retrieval on a real manual",
        "",
        f"Measured {date} by `python -m bench.retrieval --corpus python-docs` ({report.runtime_s / 60:.1f} min"
        + (
            f", of which {report.ingest_s / 60:.1f} min ingesting the manual"
            if report.built
            else ", manual cached"
        )
        + ").",
        "",
        f"- Machine: {m['cores']} cores, {m['cpu']}, {m['memory']} RAM",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        f"- Corpus: the Python 3.11 manual as Debian's `{python_docs.PACKAGE}` installs it (`{python_docs.HTML_ROOT}`), "
        "every HTML page but Sphinx's generated indexes, through the product's own ingestion "
        "(`indexing.register_file`, `ingestion.index_now`) into one collection of a database of its own.",
        f"- Questions: `{python_docs.QUESTIONS.relative_to(ROOT)}`, written as users ask "
        f"(see `bench/data/README.md`); per-question ranks in `{RESULTS.relative_to(ROOT)}`.",
        f"- Reproduce: {REPRODUCE}.",
    ]
    for title, headers, rows in sections(report):
        lines += ["", f"### {title}", "", markdown_table(headers, rows)]
    lines += ["", "### Notes", "", *(f"- {note}" for note in misses(report))]
    return "\n".join(lines)


def write_results(report: ManualReport, path: Path = RESULTS) -> None:
    """Every score and per-question rank as JSON, for diffing runs and diagnosing misses."""

    def scores(s: Scores) -> dict[str, Any]:
        return asdict(s)

    data = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": {"pages": report.pages, "chunks": report.chunks, "failed": report.failed},
        "defaults": {name: getattr(settings, name) for name in BEFORE},
        "questions": [asdict(q) for q in report.questions],
        "methods": {label: scores(s) for label, s in report.methods.items()},
        "sweep": [
            {**asdict(p), "manual": scores(s), "demo": scores(report.demo[p])}
            for p, s in report.sweep.items()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def unavailable() -> str:
    return (
        f"Skipping the real-manual benchmark: the Python 3.11 manual is not installed at {python_docs.HTML_ROOT}. "
        f"Install it with `{python_docs.INSTALL}` and run `{command('retrieval', '--corpus', 'python-docs')}`."
    )


def main(*, docs: Path | None = DOCS, rebuild: bool = False) -> None:
    if not python_docs.installed():
        print(unavailable())
        return
    report = ManualReport()
    run(report, rebuild=rebuild)
    print(render_text(report))
    write_results(report)
    print(f"\nWrote {RESULTS.relative_to(ROOT)}")
    if docs:
        from bench.report import write_section

        write_section(docs, SECTION, render_markdown(report))
        print(f"Wrote {docs}")
