"""Does the small model say what its documents say? Reference-fact share and latency in `rag` mode,
for each faithfulness setting, against the defaults measured in the same run.

Loads the demo knowledge base into a throwaway database, then answers demo questions (evenly
spread over examples/pairs.jsonl) through `console.conversations.answering.answer` in `rag` mode
(the base model with retrieval), greedily, up to 96 new tokens, once per variant:

- the baseline: today's defaults (RETRIEVAL_TOP_K=4, no context contrast);
- fewer chunks: RETRIEVAL_TOP_K of 2 and 3;
- context-aware decoding: GENERATION_CONTEXT_CONTRAST (alpha) of 0.5 and 1.

Each question is answered by every variant back to back, so load from other work on a shared
machine falls on all of them alike. Answers are scored against the pairs' reference answers:
the share of the reference's key facts the answer states (ml.evaluation.fact_share, house-voice
words left out), similarity and groundedness in the chunks the model saw. A variant passes when
it raises the fact share by at least 0.05 at no more than 1.3x the baseline's mean latency.

Prints a table, writes a JSON result (--json) and its section of docs/benchmarks.md (not --quick).
Run: .venv/bin/python -m bench.faithfulness [--quick] [--questions N] [--k 2,3] [--alpha 0.5,1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    versions,
    write_section,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

PAIRS = ROOT / "examples" / "pairs.jsonl"
SECTION = "faithfulness"
MAX_NEW_TOKENS = 96
BASELINE_K = 4
FACT_GAIN = 0.05  # a variant must raise the fact share by this much...
LATENCY_LIMIT = 1.3  # ...at no more than this multiple of the baseline's mean latency


@dataclass(frozen=True)
class Variant:
    name: str
    top_k: int = BASELINE_K
    contrast: float = 0.0
    setting: str = "defaults"


@dataclass
class Outcome:
    """A variant's answers, contexts and latencies, one per question, in question order."""

    variant: Variant
    answers: list[str] = field(default_factory=list)
    contexts: list[list[str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


def variants(ks: list[int], alphas: list[float]) -> list[Variant]:
    chosen = [Variant("baseline")]
    chosen += [Variant(f"top-k {k}", top_k=k, setting=f"RETRIEVAL_TOP_K={k}") for k in ks if k != BASELINE_K]
    chosen += [
        Variant(f"contrast {a:g}", contrast=a, setting=f"GENERATION_CONTEXT_CONTRAST={a:g}")
        for a in alphas
        if a
    ]
    return chosen


def spread(items: list[dict], n: int) -> list[dict]:
    """n items evenly spread over the list (every document of the demo gets its turn)."""
    if n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 questions, print only")
    parser.add_argument("--questions", type=int, default=30, help="how many demo questions (default 30)")
    parser.add_argument("--k", default="2,3", help="top-k values besides the baseline's 4 (default 2,3)")
    parser.add_argument("--alpha", default="0.5,1", help="context-contrast alphas (default 0.5,1)")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "faithfulness.json")
    args = parser.parse_args()
    if args.questions < 1:
        parser.error("--questions must be at least 1.")
    setup_django()
    chosen = variants(
        [int(k) for k in args.k.split(",") if k], [float(a) for a in args.alpha.split(",") if a]
    )
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    pairs = spread(pairs, 3 if args.quick else args.questions)
    with throwaway_environment("faithfulness_bench"):
        started = time.monotonic()
        meter = CpuMeter()
        outcomes = measure(chosen, pairs)
        other_cpu = meter.other_share()
        info = versions("Python", "torch", "transformers")
        minutes = (time.monotonic() - started) / 60
    rows = score(outcomes, pairs)
    print(text_table(HEADERS, [row_cells(row) for row in rows]))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "questions": len(pairs),
        "max_new_tokens": MAX_NEW_TOKENS,
        "minutes": round(minutes, 1),
        "other_cpu": round(other_cpu, 3),
        "machine": machine_info(),
        "versions": info,
        "rows": rows,
        "answers": {o.variant.name: o.answers for o in outcomes},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nWrote {args.json}")
    if not args.quick:
        write_section(DOCS, SECTION, section(result))
        print(f"Wrote {DOCS}")


def measure(chosen: list[Variant], pairs: list[dict]) -> list[Outcome]:
    from django.conf import settings
    from django.core.management import call_command

    from console.conversations import answering

    settings.BASE_MODEL = ""  # the bundled default model
    settings.GENERATION_TEMPERATURE = 0.0
    settings.GENERATION_MAX_NEW_TOKENS = MAX_NEW_TOKENS
    with open(os.devnull, "w") as devnull:
        call_command(
            "ingest", str(ROOT / "examples" / "knowledge"), collection="demo", sync=True, stdout=devnull
        )
    answering.answer(pairs[0]["question"], platform="cli", mode="rag")  # warm-up: load the model
    outcomes = [Outcome(variant) for variant in chosen]
    for number, pair in enumerate(pairs, start=1):
        for outcome in outcomes:
            settings.RETRIEVAL_TOP_K = outcome.variant.top_k
            settings.GENERATION_CONTEXT_CONTRAST = outcome.variant.contrast
            reply = answering.answer(pair["question"], platform="cli", mode="rag")
            outcome.answers.append(reply.text)
            outcome.contexts.append([chunk.get("text", "") for chunk in reply.context])
            outcome.seconds.append(reply.timings.get("total", 0.0) / 1000)
            outcome.tokens.append(reply.completion_tokens)
        progress(f"question {number}/{len(pairs)}: " + ", ".join(f"{o.seconds[-1]:.1f} s" for o in outcomes))
    return outcomes


def score(outcomes: list[Outcome], pairs: list[dict]) -> list[dict]:
    """One row per variant: its scores, latency and verdict against the baseline (the first)."""
    import numpy as np
    from django.conf import settings

    from ml import embeddings, evaluation
    from ml.voice import VoiceProfile

    references = [pair["answer"] for pair in pairs]
    profile = VoiceProfile.of(references)

    def embed(texts: list[str]):
        return embeddings.embed(settings.EMBEDDING_MODEL, texts)

    rows = []
    for outcome in outcomes:
        each = evaluation.score_each(outcome.answers, references, outcome.contexts, embed, profile)
        facts = [s.key_facts for s in each if s.key_facts is not None]
        rows.append(
            {
                "variant": outcome.variant.name,
                "setting": outcome.variant.setting,
                "fact_share": float(np.mean(facts)) if facts else 0.0,
                "similarity": float(np.mean([s.similarity for s in each])),
                "groundedness": float(np.mean([s.groundedness for s in each])),
                "words": float(np.mean([s.length for s in each])),
                "tokens": float(np.mean(outcome.tokens)),
                "mean_s": float(np.mean(outcome.seconds)),
                "p95_s": float(np.percentile(outcome.seconds, 95)),
                "chunks": float(np.mean([len(c) for c in outcome.contexts])),
            }
        )
    baseline = rows[0]
    for row in rows:
        row["fact_gain"] = row["fact_share"] - baseline["fact_share"]
        row["latency_ratio"] = row["mean_s"] / baseline["mean_s"] if baseline["mean_s"] else float("nan")
        row["passes"] = (
            row is not baseline and row["fact_gain"] >= FACT_GAIN and row["latency_ratio"] <= LATENCY_LIMIT
        )
    return rows


HEADERS = [
    "variant",
    "setting",
    "fact share",
    "gain",
    "similarity",
    "grounded",
    "chunks",
    "tokens",
    "mean s",
    "p95 s",
    "latency",
    "default?",
]


def row_cells(row: dict) -> list[str]:
    verdict = "baseline" if row["variant"] == "baseline" else ("yes" if row["passes"] else "no")
    return [
        row["variant"],
        row["setting"],
        f"{row['fact_share']:.3f}",
        f"{row['fact_gain']:+.3f}",
        f"{row['similarity']:.3f}",
        f"{row['groundedness']:.3f}",
        f"{row['chunks']:.1f}",
        f"{row['tokens']:.0f}",
        f"{row['mean_s']:.1f}",
        f"{row['p95_s']:.1f}",
        f"{row['latency_ratio']:.2f}x",
        verdict,
    ]


def section(result: dict) -> str:
    m = result["machine"]
    table = markdown_table(HEADERS, [row_cells(row) for row in result["rows"]])
    passing = [row["setting"] for row in result["rows"] if row["passes"]]
    decision = (
        f"On by default: {', '.join(passing)}."
        if passing
        else "No variant passed, so the defaults stay (RETRIEVAL_TOP_K=4, GENERATION_CONTEXT_CONTRAST=0)."
    )
    return "\n".join(
        [
            "## Faithfulness: reference facts in `rag` answers, per setting",
            "",
            f"Run {result['date']} with `{command('faithfulness')}` ({result['minutes']} min; {m['cores']} cores, "
            f"{m['cpu']}; torch {result['versions']['torch']}; other processes used "
            f"{result['other_cpu']:.0%} of the CPU meanwhile).",
            "",
            table,
            "",
            f"- {result['questions']} demo questions evenly spread over `examples/pairs.jsonl`, answered in `rag` "
            "mode (the bundled SmolLM2-135M with retrieval) through `answering.answer` over the demo KB, greedy, up "
            f"to {result['max_new_tokens']} new tokens; each question by every variant back to back.",
            "- Fact share: the share of a reference's key facts (numbers, amounts, times, codes, channels, names) "
            "the answer states, house-voice words left out (`ml.evaluation.fact_share`); similarity and "
            "groundedness as the evaluation gate scores them. Latency: the whole `answer()` call; `latency` is the "
            "mean against the baseline's in the same run.",
            f"- Rule: a setting goes on by default only if it raises the fact share by at least {FACT_GAIN} at no "
            f"more than {LATENCY_LIMIT}x the latency. {decision}",
        ]
    )


if __name__ == "__main__":
    main()
