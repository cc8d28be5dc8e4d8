"""How many retrieved chunks should the model see? Answer quality against RETRIEVAL_TOP_K.

Loads the demo knowledge base into a throwaway test database, then answers demo questions
(examples/pairs.jsonl, every 3rd) through `console.conversations.answering.answer` at each top-k, greedily,
and scores the answers against the pairs' reference answers with the evaluation gate's own
metrics (ml.evaluation.score_answers): similarity, ROUGE-L, groundedness in the chunks the model
saw. Groundedness grows with the context by construction (more text can back a sentence), so
similarity and ROUGE-L are the measures of a better answer.

Prints a table and writes its section of docs/benchmarks.md (not with --quick).
Run: .venv/bin/python -m bench.context [--quick] [--k 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime

from bench.environment import setup_django, throwaway_environment
from bench.report import DOCS, ROOT, command, machine_info, markdown_table, progress, write_section

PAIRS = ROOT / "examples" / "pairs.jsonl"
SECTION = "context"
MAX_NEW_TOKENS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 questions, print only")
    parser.add_argument("--k", default="1,2,4", help="top-k values to compare (default 1,2,4)")
    args = parser.parse_args()
    setup_django()
    ks = [int(k) for k in args.k.split(",")]
    with throwaway_environment("context_bench"):
        started = time.monotonic()
        rows, questions = measure(ks, quick=args.quick)
        minutes = (time.monotonic() - started) / 60
    table = markdown_table(HEADERS, rows)
    print(table)
    if not args.quick:
        write_section(DOCS, SECTION, section(table, questions, minutes))
        print(f"\nWrote {DOCS}")


def measure(ks: list[int], *, quick: bool) -> tuple[list[list[str]], int]:
    from django.conf import settings
    from django.core.management import call_command

    from console.conversations import answering
    from ml import embeddings, evaluation

    settings.BASE_MODEL = ""  # the bundled default model
    settings.GENERATION_TEMPERATURE = 0.0
    settings.GENERATION_MAX_NEW_TOKENS = MAX_NEW_TOKENS
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    call_command("ingest", str(ROOT / "examples" / "knowledge"), collection="demo", sync=True, stdout=devnull)
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()][::3]
    pairs = pairs[:4] if quick else pairs

    def embed(texts: list[str]):
        return embeddings.embed(settings.EMBEDDING_MODEL, texts)

    rows = []
    for k in ks:
        settings.RETRIEVAL_TOP_K = k
        answers, contexts, seconds = [], [], []
        for pair in pairs:
            reply = answering.answer(pair["question"], platform="cli")
            answers.append(reply.text)
            contexts.append([chunk.get("text", "") for chunk in reply.context])
            seconds.append(reply.timings.get("total", 0.0) / 1000)
        scores = evaluation.score_answers(answers, [p["answer"] for p in pairs], contexts, embed)
        mean_chunks = sum(len(c) for c in contexts) / len(contexts)
        rows.append(
            [
                str(k),
                f"{mean_chunks:.1f}",
                f"{scores.similarity:.3f}",
                f"{scores.rouge_l:.3f}",
                f"{scores.groundedness:.3f}",
                f"{scores.length:.0f}",
                f"{sorted(seconds)[len(seconds) // 2]:.1f}",
            ]
        )
        progress(f"top-k {k}: " + ", ".join(rows[-1][1:]))
    return rows, len(pairs)


HEADERS = ["top-k", "chunks seen", "similarity", "ROUGE-L", "groundedness", "words", "answer s (p50)"]


def section(table: str, questions: int, minutes: float) -> str:
    m = machine_info()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "## Context size: answer quality against RETRIEVAL_TOP_K",
            "",
            f"Run {date} with `{command('context')}` ({minutes:.1f} min; {m['cores']} cores, {m['cpu']}).",
            "",
            table,
            "",
            f"- {questions} demo questions (every 3rd of `examples/pairs.jsonl`), answered by the bundled "
            f"SmolLM2-135M through `answering.answer` over the demo KB, greedy, up to {MAX_NEW_TOKENS} new "
            "tokens; chunks below RETRIEVAL_MIN_SIMILARITY are dropped, so fewer may be seen than top-k.",
            "- Scores are the evaluation gate's (ml.evaluation.score_answers) against the pairs' reference "
            "answers, which are written in the house voice the base model does not have, so absolute "
            "similarity is low for every k; compare the rows. Groundedness is measured in the chunks the "
            "model saw, so it favours larger k by construction.",
        ]
    )


if __name__ == "__main__":
    main()
