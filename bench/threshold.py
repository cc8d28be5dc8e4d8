"""Calibrate RETRIEVAL_MIN_SIMILARITY: below it, the bot says the knowledge base doesn't cover it.

Loads the demo knowledge base into a throwaway test database, then compares the best cosine
similarity of in-domain questions (bench/questions.jsonl) with that of off-topic questions.
Run: .venv/bin/python -m bench.threshold
"""

from __future__ import annotations

import json
import os

from bench.environment import setup_django, throwaway_environment
from bench.report import ROOT, text_table

OFF_TOPIC = [
    "What is the capital of Australia?",
    "How do I bake sourdough bread?",
    "Who won the 1998 football world cup?",
    "What's a good name for a cat?",
    "Explain quantum entanglement",
    "How tall is Mount Everest?",
    "Recommend a sci-fi novel",
    "What is the boiling point of water at altitude?",
    "How do I change a car tyre?",
    "What's the weather like on Mars?",
    "Translate hello into Japanese",
    "How many legs does a spider have?",
    "What is the best pizza topping?",
    "Write a poem about the sea",
    "Who painted the Mona Lisa?",
]
CANDIDATES = (0.20, 0.225, 0.25, 0.275, 0.30, 0.35, 0.40)


def main() -> None:
    setup_django()
    with throwaway_environment("threshold_bench"):
        report(measure())


def measure() -> tuple[list[float], list[float]]:
    from django.core.management import call_command

    from console.knowledge.search import search

    call_command(
        "ingest",
        str(ROOT / "examples" / "knowledge"),
        collection="demo",
        sync=True,
        stdout=open(os.devnull, "w"),
    )
    questions = [json.loads(line)["question"] for line in (ROOT / "bench" / "questions.jsonl").open()]

    def best(question: str) -> float:
        results = search(question, k=1, method="vector")
        return results[0].similarity if results else 0.0

    return sorted(best(q) for q in questions), sorted(best(q) for q in OFF_TOPIC)


def report(scores: tuple[list[float], list[float]]) -> None:
    inside, outside = scores
    print(
        f"in-domain questions: {len(inside)}, lowest best-similarity {inside[0]:.3f}, median {inside[len(inside) // 2]:.3f}"
    )
    print(
        f"off-topic questions: {len(outside)}, highest best-similarity {outside[-1]:.3f}, median {outside[len(outside) // 2]:.3f}"
    )
    rows = [
        [
            f"{t:.3f}",
            f"{sum(s >= t for s in inside) / len(inside):.1%}",
            f"{sum(s < t for s in outside) / len(outside):.1%}",
        ]
        for t in CANDIDATES
    ]
    print(text_table(["threshold", "in-domain answered", "off-topic declined"], rows))


if __name__ == "__main__":
    main()
