"""Does `both` combine? The learning loop end to end on the demo, as a team would run it.

1. A throwaway database: the demo knowledge base ingested, and `examples/pairs.jsonl` imported
   and approved **without its context column** (a spreadsheet of questions and answers, the
   seed's flow; the `document` column is kept).
2. Two training runs at the defaults on the same pairs and the same held-out split, each through
   the product path (`runs.start_run` → `runs.run_training`, the gate included):
   - trained with retrieved context (`TRAIN_CONTEXT=retrieved`, the default): each pair shows the
     chunks the bot retrieves for its question, RAFT-style;
   - trained without it (`TRAIN_CONTEXT=stored`): the pairs' own, empty, context — what the
     product did before.
3. Every held-out question is answered through `answering.answer` in each mode: prompt, rag,
   adapter and both (the last two with each run's adapter), greedy.

Scores per mode: voice (the demo's house-voice rules: opens with "Short answer:", a
"(see <title>)" citation, three lines, the "fair winds" sign-off; the share of the four), the
share of the reference's key facts the answer states (`ml.evaluation.fact_share`: numbers,
amounts, times, names, codes), similarity to the reference, and latency. Targets with the bundled
model on a CPU: `both` voice ≥ 0.9, `both` fact share ≥ `rag`'s + 0.10.

Prints the table and writes its section of docs/benchmarks.md and bench/results/loop.json.
Run: .venv/bin/python -m bench.loop [--max-new-tokens 96] [--heldout N] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.environment import setup_django, throwaway_environment
from bench.report import DOCS, ROOT, command, machine_info, markdown_table, progress, write_section

PAIRS = ROOT / "examples" / "pairs.jsonl"
RESULTS = ROOT / "bench" / "results" / "loop.json"
PARTIAL = ROOT / "bench" / "results" / "loop.partial.json"
SECTION = "loop"
MODES = ("prompt", "rag", "adapter", "both")
VOICE_TARGET = 0.9
FACT_GAIN_TARGET = 0.10


def house_voice(answer: str) -> float:
    """The demo pairs' house voice (examples/README.md): the share of its four rules an answer keeps."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    rules = [
        answer.strip().startswith("Short answer:"),
        "(see " in answer,
        len(lines) == 3,
        bool(lines) and "fair winds" in lines[-1],
    ]
    return sum(rules) / len(rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=96, help="for the gate and the modes")
    parser.add_argument("--heldout", type=int, default=0, help="answer only the first N held-out questions")
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (default: TRAIN_EPOCHS)")
    parser.add_argument("--pairs", type=int, default=0, help="import only the first N pairs (a smoke run)")
    parser.add_argument(
        "--render", type=Path, help="only write the section from a results file (e.g. a partial one)"
    )
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        write_section(DOCS, SECTION, section(result))
        print(section(result))
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    setup_django()
    started = time.monotonic()
    with throwaway_environment("loop_bench"):
        result = measure(args)
    result["minutes"] = round((time.monotonic() - started) / 60, 1)
    text = section(result)
    print(text)
    if not args.pairs:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if args.pairs:
        print("\nA smoke run (--pairs): nothing written.")
        return
    write_section(DOCS, SECTION, text)
    print(f"\nWrote {DOCS} and {RESULTS}")


def measure(args: argparse.Namespace) -> dict:
    from django.conf import settings
    from django.core.management import call_command

    from console.training.adapters import forget_active_adapter
    from console.training.models import TrainingPair

    settings.BASE_MODEL = ""  # the bundled default
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="loop-bench-"))  # its adapters, not the real ones
    settings.GENERATOR = "local"
    settings.GENERATION_TEMPERATURE = 0.0
    settings.GENERATION_MAX_NEW_TOKENS = args.max_new_tokens
    settings.EVAL_MAX_NEW_TOKENS = args.max_new_tokens
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    call_command("ingest", str(ROOT / "examples" / "knowledge"), collection="demo", sync=True, stdout=devnull)
    with tempfile.TemporaryDirectory() as folder:
        bare = Path(folder) / "pairs.jsonl"
        rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
        rows = rows[: args.pairs] if args.pairs else rows
        bare.write_text(
            "".join(json.dumps({k: v for k, v in r.items() if k != "context"}) + "\n" for r in rows)
        )
        call_command("import_pairs", str(bare), approve=True, stdout=devnull)
    assert not TrainingPair.objects.exclude(context=[]).exists(), "pairs were imported with a context"
    progress(f"{TrainingPair.objects.count()} pairs imported without context")

    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "max_new_tokens": args.max_new_tokens,
        "runs": {},
        "modes": {},
    }
    # The run that matters first, each run's modes right after it: a long run cut short still
    # leaves its numbers in the partial results file.
    for label, context in (("with retrieved context", "retrieved"), ("without retrieved context", "stored")):
        settings.TRAIN_CONTEXT = context
        forget_active_adapter()
        run = result["runs"][label] = train(args.epochs)
        systems = [] if result["modes"] else [("prompt", "prompt", None), ("rag", "rag", None)]
        systems += [(f"adapter, {label}", "adapter", run["name"]), (f"both, {label}", "both", run["name"])]
        result["modes"].update(answer_modes(systems, run["heldout"], args.heldout))
        if not args.pairs:
            PARTIAL.parent.mkdir(parents=True, exist_ok=True)
            PARTIAL.write_text(json.dumps(result, indent=2) + "\n")
    forget_active_adapter()
    return result


def train(epochs: int) -> dict:
    """One run through the product path; what it trained on, how long, and the gate's verdict."""
    from collections import Counter

    from console.training import runs
    from console.training.models import TrainingRun

    run = runs.start_run(epochs=epochs or None, enqueue=False)
    started = time.monotonic()
    run = runs.run_training(
        run.pk,
        progress=lambda step, total, loss: (
            step % 10 == 0 and progress(f"{run.name} step {step}/{total} loss {loss:.2f}")
        ),
    )
    minutes = (time.monotonic() - started) / 60
    run = TrainingRun.objects.get(pk=run.pk)
    contexts = Counter(e["context_from"] for e in run.examples if not e["heldout"])
    progress(f"{run.name}: {run.status}, promoted={run.metrics.get('promoted')} in {minutes:.1f} min")
    return {
        "name": run.name,
        "status": run.status,
        "error": run.error,
        "minutes": round(minutes, 1),
        "steps": run.total_steps,
        "train_loss": run.metrics.get("train_loss"),
        "contexts": dict(contexts),
        "heldout": [e["pair_id"] for e in run.examples if e["heldout"]],
        "promoted": run.metrics.get("promoted"),
        "reasons": run.metrics.get("reasons", []),
        "gate": {who: run.metrics.get(who) for who in ("base", "live", "candidate")},
    }


def answer_modes(systems: list[tuple[str, str, str | None]], heldout_ids: list[int], limit: int) -> dict:
    """Each held-out question in each (name, mode, adapter), through the answering service; scored."""
    from django.conf import settings

    from console.conversations import answering
    from console.training.models import TrainingPair
    from ml import embeddings, evaluation
    from ml.voice import VoiceProfile

    heldout = list(TrainingPair.objects.filter(pk__in=heldout_ids).order_by("pk"))
    heldout = heldout[:limit] if limit else heldout
    profile = VoiceProfile.of(list(TrainingPair.objects.values_list("answer", flat=True)))
    ignore = evaluation.voice_words(profile)
    table = {}
    for name, mode, adapter in systems:
        answers, seconds = [], []
        for pair in heldout:
            reply = answering.answer(pair.question, platform="cli", mode=mode, adapter_name=adapter)
            answers.append(reply.text)
            seconds.append(reply.timings.get("total", 0.0) / 1000)
        shares = [
            evaluation.fact_share(a, p.answer, ignore=ignore) for a, p in zip(answers, heldout, strict=True)
        ]
        shares = [s for s in shares if s is not None]
        similarity = evaluation.semantic_similarity(
            lambda texts: embeddings.embed(settings.EMBEDDING_MODEL, texts),
            answers,
            [p.answer for p in heldout],
        )
        table[name] = {
            "voice": statistics.mean(house_voice(a) for a in answers),
            "fact_share": statistics.mean(shares) if shares else 0.0,
            "similarity": statistics.mean(similarity),
            "seconds_p50": statistics.median(seconds),
            "examples": [
                {"question": p.question, "answer": a} for p, a in zip(heldout[:3], answers, strict=False)
            ],
        }
        progress(f"{name}: voice {table[name]['voice']:.2f} facts {table[name]['fact_share']:.2f}")
    return table


def section(result: dict) -> str:
    modes = result["modes"]
    rows = [
        [
            name,
            f"{m['voice']:.2f}",
            f"{m['fact_share']:.3f}",
            f"{m['similarity']:.3f}",
            f"{m['seconds_p50']:.1f}",
        ]
        for name, m in modes.items()
    ]
    table = markdown_table(
        ["mode", "house voice", "reference-fact share", "similarity", "answer s (p50)"], rows
    )
    run_rows = [
        [
            label,
            run["status"],
            str(run["steps"]),
            f"{run['train_loss']:.2f}" if run["train_loss"] is not None else "—",
            ", ".join(f"{k}: {v}" for k, v in sorted(run["contexts"].items())),
            f"{run['minutes']:.1f}",
            "promoted" if run["promoted"] else "refused",
        ]
        for label, run in result["runs"].items()
    ]
    runs_table = markdown_table(
        ["run", "status", "steps", "train loss", "training contexts", "minutes (train + gate)", "gate"],
        run_rows,
    )
    rag = modes["rag"]["fact_share"]
    both = modes["both, with retrieved context"]
    verdicts = [
        f"`both` voice {both['voice']:.2f} (target ≥ {VOICE_TARGET}): {'met' if both['voice'] >= VOICE_TARGET else 'missed'}",
        f"`both` reference-fact share {both['fact_share']:.3f} vs `rag` {rag:.3f} + {FACT_GAIN_TARGET} "
        f"(target ≥ {rag + FACT_GAIN_TARGET:.3f}): {'met' if both['fact_share'] >= rag + FACT_GAIN_TARGET else 'missed'}",
    ]
    gate_lines = [
        f"- {label}: " + "; ".join(run["reasons"]) for label, run in result["runs"].items() if run["reasons"]
    ]
    m = result["machine"]
    heldout = len(next(iter(result["runs"].values()))["heldout"])
    return "\n".join(
        [
            "## The learning loop: does `both` combine?",
            "",
            f"Run {result['date']} with `{command('loop')}` ({result['minutes']} min in all; {m['cores']} cores, {m['cpu']}).",
            "The demo pairs imported **without** their context column, trained twice at the defaults (same pairs, "
            f"same split), then {heldout} held-out questions answered in each mode through the answering service, "
            f"greedy, up to {result['max_new_tokens']} new tokens.",
            "",
            runs_table,
            "",
            table,
            "",
            *[f"- {v}" for v in verdicts],
            "- House voice: the share of the demo's four voice rules an answer keeps (opens with “Short answer:”, "
            "cites “(see …)”, three lines, signs “fair winds”). Reference-fact share: the share of the reference "
            "answer's numbers, amounts, times, names and codes the answer states (`ml.evaluation.fact_share`).",
            "",
            "The gate's reasons (base model + retrieval, live and candidate, answering with live retrieval):",
            "",
            *gate_lines,
        ]
    )


if __name__ == "__main__":
    main()
