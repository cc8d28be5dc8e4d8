"""Training benchmark: our LoRA job (`ml.training.train_adapter`) against a plain Hugging Face `Trainer`.

Both sides train one epoch on the same examples (the demo pairs, repeated with variations to reach
N), tokenized by the same `ml.training.tokenize_example` (loss on answer tokens only), on the same
model with the same peft LoRA config and batch size. The baseline is what a first attempt looks
like: a collator that pads every batch to the longest example in the whole dataset and default
`TrainingArguments`. Wall time runs from job start (model load) to the saved adapter; tokens/s
counts non-padding tokens. When a run would take longer than --max-seconds, it is stopped after
--sample-steps optimizer steps and the rest is extrapolated from the measured time per padded
token (labelled as such). Prints a table; a full run also rewrites the train section of
docs/benchmarks.md (a --quick smoke run writes only when given --docs).

    .venv/bin/python -m bench.train [--quick] [--sizes 50,200,1000] [--max-seconds S] [--device cuda]
    .venv/bin/python -m bench.train --device cuda --qwen-shaped   # random-weight Qwen2.5-0.5B shape
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

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
from ml.prompting import ContextChunk
from ml.training import IGNORE_INDEX, Example, TrainingConfig, plan_batches

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

PAIRS = ROOT / "examples" / "pairs.jsonl"
SECTION = "train"
DEFAULT_SIZES = (50, 200, 1000)
RATIO_TARGET = 2.0
H100_TARGET_S = 120.0
# Lead-ins for repeated pairs, so copies are not byte-identical (as real 👍 pairs rarely are).
LEAD_INS = ("quick q: ", "hey, ", "sorry if this was asked before: ", "one more: ", "for a new hire: ")
# Qwen2.5-0.5B's shape; the vocabulary keeps Qwen's size so the output layer costs what it would.
QWEN_SHAPE = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


# --- Data --------------------------------------------------------------------------------------


def demo_examples(count: int, seed: int = 0) -> list[Example]:
    """`count` examples: the demo pairs in a seeded order, then copies of them with variations.

    A copy gets a lead-in on its question and one or two more context chunks from the same
    document (retrieval usually returns several), so lengths vary as in real data.
    """
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    contexts = defaultdict(list)
    for row in rows:
        contexts[row["document"]].append(row["context"])
    examples = []
    for n in range(count):
        copy, row = divmod(n, len(rows))
        row = rows[row]
        question, chunks = row["question"], [row["context"]]
        if copy:
            question = LEAD_INS[(copy - 1) % len(LEAD_INS)] + question
            others = [text for text in contexts[row["document"]] if text != row["context"]]
            chunks += others[copy % len(others) :][: 1 + copy % 2] if others else []
        context = [ContextChunk(title="", text=text) for text in chunks]  # as import_pairs stores it
        examples.append(Example(question=question, answer=row["answer"], context=context))
    return examples


# --- Timing: per-step stamps, early stop, extrapolation -----------------------------------------


class StopEarly(Exception):
    """Raised from our progress callback to end a sampled run (train_adapter then saves nothing)."""


@dataclass
class Clock:
    """Step timestamps of one run; decides when a run is sampled and extrapolates the rest.

    `step_tokens` are the padded tokens (rows x width) of each optimizer step in the order the run
    takes them. After `sample_steps` steps (or whenever the budget is spent), the time of the rest
    is projected as (median seconds per padded token of steps 2..k) x (padded tokens still to go):
    the first step carries one-off warm-up costs, and the median shrugs off a step slowed by
    other work on a shared machine. Runs with less than twice the sample left run to the end.
    """

    step_tokens: list[int]
    max_seconds: float
    sample_steps: int
    sync: bool = False
    started: float = field(default_factory=time.perf_counter)
    stamps: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def tick(self) -> bool:
        """Record a finished step; True when the run should stop here and be extrapolated."""
        if self.sync:
            import torch

            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        done = len(self.stamps)
        if done < max(2, self.sample_steps) or 2 * done >= len(self.step_tokens):
            return False  # too few steps to extrapolate from, or so few left that finishing is cheap
        over_budget = self.stamps[-1] - self.started > self.max_seconds
        self.stopped_early = over_budget or self.projected() > self.max_seconds
        return self.stopped_early

    def projected(self) -> float:
        """Seconds from start to the last step: measured so far plus the extrapolated rest."""
        done = len(self.stamps)
        rate = statistics.median(
            (self.stamps[i] - self.stamps[i - 1]) / self.step_tokens[i] for i in range(1, done)
        )
        return self.stamps[-1] - self.started + rate * sum(self.step_tokens[done:])


@dataclass
class Run:
    trainer: str
    pairs: int
    examples: int
    tokens: int  # non-padding tokens of one epoch
    padding: int  # padding tokens of one epoch
    seconds: float  # job start to saved adapter; projected when extrapolated
    steps: int
    steps_timed: int
    extrapolated: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def finish(clock: Clock, trainer: str, pairs: int, lengths: list[int], padding: int, ended: float) -> Run:
    extrapolated = clock.stopped_early
    return Run(
        trainer=trainer,
        pairs=pairs,
        examples=len(lengths),
        tokens=sum(lengths),
        padding=padding,
        seconds=clock.projected() if extrapolated else ended - clock.started,
        steps=len(clock.step_tokens),
        steps_timed=len(clock.stamps),
        extrapolated=extrapolated,
    )


# --- The two trainers --------------------------------------------------------------------------


def lengths_of(base_model: str, examples: list[Example], config: TrainingConfig) -> list[int]:
    """Token counts of the examples that fit, as both trainers will see them."""
    from transformers import AutoTokenizer

    from ml.training import tokenize_examples

    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    features, _ = tokenize_examples(tokenizer, examples, config.max_length)
    return [len(ids) for ids, _ in features]


def run_ours(base_model, examples, config, device, lengths, budget, work: Path) -> Run:
    from ml.training import padding_tokens, train_adapter

    plan = plan_batches(lengths, config.batch_size, seed=config.seed, epoch=0)
    clock = Clock(
        [max(lengths[i] for i in b) * len(b) for b in plan], *budget, sync=device.startswith("cuda")
    )

    def on_step(step: int, total: int, loss: float) -> None:
        if clock.tick():
            raise StopEarly

    with contextlib.suppress(StopEarly):
        result = train_adapter(
            base_model,
            examples,
            work / "ours",
            config=config,
            work_dir=work / "ours-work",
            progress=on_step,
            device=device,
        )
        if result.tokens != sum(lengths):
            progress(f"warning: train_adapter counted {result.tokens} tokens, the bench {sum(lengths)}")
    ended = time.perf_counter()
    return finish(clock, "ours", len(examples), lengths, padding_tokens(lengths, plan), ended)


def run_baseline(base_model, examples, config, device, lengths, budget, work: Path) -> Run:
    """The plain recipe: load, wrap in peft, tokenize, Trainer with defaults, save the adapter."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from ml.training import load_lora_model, tokenize_examples

    width, rows = max(lengths), config.batch_size
    full, rest = divmod(len(lengths), rows)
    clock = Clock(
        [width * rows] * full + [width * rest] * bool(rest), *budget, sync=device.startswith("cuda")
    )
    model, tokenizer = load_lora_model(str(base_model), config, device)  # the same model setup as ours
    features, _ = tokenize_examples(tokenizer, examples, config.max_length)
    dataset = [{"input_ids": ids, "labels": labels} for ids, labels in features]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    longest = max(len(row["input_ids"]) for row in dataset)

    def pad_to_longest_in_dataset(batch: list[dict]) -> dict:
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, row in enumerate(batch):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = clock.tick()

    arguments = TrainingArguments(
        output_dir=str(work / "baseline-work"),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=1,
        report_to=[],
        disable_tqdm=True,  # cosmetic: no progress bar in the bench's output
        use_cpu=not device.startswith("cuda"),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        data_collator=pad_to_longest_in_dataset,
        callbacks=[Stamp()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if not clock.stopped_early:
        trainer.save_model(str(work / "baseline"))
    ended = time.perf_counter()
    padding = sum(width - n for n in lengths)
    return finish(clock, "HF Trainer", len(examples), lengths, padding, ended)


# --- Models ------------------------------------------------------------------------------------


def default_base_model() -> str:
    """BASE_MODEL, or the bundled SmolLM2 converted under DATA_DIR/models, as the app resolves it.

    Read from the environment with console/settings.py's defaults rather than through Django:
    importing the settings starts the embedded PostgreSQL and Redis, which training never needs.
    """
    from ml.model_files import resolve_base_model

    data_dir = Path(os.environ.get("DATA_DIR") or ROOT / "var")
    return str(resolve_base_model(os.environ.get("BASE_MODEL", ""), data_dir))


def build_qwen_shaped(folder: Path, tokenizer_source: str) -> Path:
    """A random-weight model with Qwen2.5-0.5B's shape (bf16 safetensors) and `tokenizer_source`'s tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, local_files_only=True)
    config = Qwen2Config(
        **QWEN_SHAPE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny(folder: Path) -> Path:
    from tests.tiny_models import build_tiny_model

    return build_tiny_model(folder)


def warm_up(base_model: str, device: str) -> None:
    """Import the libraries and modeling code, page in the weights, start CUDA and run one untimed
    LoRA forward and backward, so one-off first-call costs land in neither side's time."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM")).to(
        device
    )
    input_ids = torch.ones((2, 16), dtype=torch.long, device=device)
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]).step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    del model


# --- Report ------------------------------------------------------------------------------------


@dataclass
class Report:
    model: str
    device: str
    sizes: list[int]
    config: TrainingConfig
    max_seconds: float
    sample_steps: int
    quick: bool
    runs: list[Run] = field(default_factory=list)
    length_stats: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # min, median, max
    load_average: tuple[float, float] = (0.0, 0.0)
    runtime_s: float = 0.0
    started: str = ""

    def pair(self, size: int) -> tuple[Run, Run]:
        ours = next(r for r in self.runs if r.pairs == size and r.trainer == "ours")
        base = next(r for r in self.runs if r.pairs == size and r.trainer != "ours")
        return ours, base


HEADERS = [
    "pairs",
    "trainer",
    "examples",
    "steps timed",
    "tokens",
    "pad/token",
    "wall s",
    "tokens/s",
    "speed-up",
]


def rows(report: Report) -> list[list[str]]:
    table = []
    for size in report.sizes:
        ours, base = report.pair(size)
        for run in (ours, base):
            mark = "*" if run.extrapolated else ""
            table.append(
                [
                    str(size),
                    run.trainer,
                    str(run.examples),
                    f"{run.steps_timed}/{run.steps}",
                    str(run.tokens),
                    f"{run.padding / run.tokens:.2f}",
                    f"{run.seconds:.1f}{mark}",
                    f"{run.tokens_per_second:.0f}{mark}",
                    f"{base.seconds / ours.seconds:.2f}x{mark}" if run is ours else "",
                ]
            )
    return table


def _machine() -> str:
    info = machine_info()
    return f"{info['cores']} cores {info['cpu']}"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (bf16, SDPA)"
    return f"CPU, fp32, {torch.get_num_threads()} torch threads, {_machine()}"


def targets(report: Report) -> list[list[str]]:
    on_gpu = report.device.startswith("cuda")
    result = []
    for size in report.sizes:
        ours, base = report.pair(size)
        ratio = base.seconds / ours.seconds
        where = "" if on_gpu else " (the target is for a GPU; CPU shown for reference)"
        verdict = "pass" if ratio >= RATIO_TARGET else "fail"
        mark = ", extrapolated" if ours.extrapolated or base.extrapolated else ""
        result.append(
            [
                f"{size} pairs: ours vs HF Trainer{where}",
                f">= {RATIO_TARGET:g}x",
                f"{ratio:.2f}x{mark}",
                verdict,
            ]
        )
    if 1000 in report.sizes and on_gpu and "H100" in device_name(report.device):
        ours, _ = report.pair(1000)
        verdict = "pass" if ours.seconds < H100_TARGET_S else "fail"
        result.append(["1,000 pairs on one H100", f"< {H100_TARGET_S:g} s", f"{ours.seconds:.1f} s", verdict])
    else:
        result.append(["1,000 pairs on one H100", f"< {H100_TARGET_S:g} s", "not measured here", "-"])
    return result


def notes(report: Report) -> list[str]:
    c = report.config
    lengths = "; ".join(f"{n} pairs {lo}/{mid}/{hi}" for n, (lo, mid, hi) in report.length_stats.items())
    return [
        f"Model {report.model} on {device_name(report.device)}; LoRA r={c.lora_rank}, alpha={c.lora_alpha}, "
        f"dropout={c.lora_dropout}, {c.target_modules}; batch size {c.batch_size}; 1 epoch; max_length {c.max_length}.",
        "Wall s: job start (model load) to the saved adapter. tokens: non-padding tokens of one epoch; "
        "tokens/s = tokens / wall s. pad/token: padding tokens per real token. speed-up: HF wall s / ours.",
        "Ours: ml.training.train_adapter (length-grouped batches padded to their own longest example, "
        "logits only at answer positions, checkpoints every "
        f"{c.checkpoint_every} steps). HF Trainer: same model, LoRA config, tokenize_example features and "
        "batch size; a collator padding every batch to the longest example in the dataset; default "
        "TrainingArguments otherwise (no group_by_length; progress bar off).",
        f"Example lengths in tokens (min/median/max): {lengths}. Pairs are the {PAIRS.name} demo pairs "
        "in a seeded order; beyond 115, copies with a lead-in on the question and 1-2 more context "
        "chunks from the same document.",
        f"* = extrapolated: a run projected to exceed {report.max_seconds:g} s is stopped after "
        f"{report.sample_steps} optimizer steps; the rest is its median time per padded token (steps 2..k) "
        "times the padded tokens still to go; the final adapter save and our periodic checkpoints are left out.",
        f"Load average {report.load_average[0]:.1f} at the start, {report.load_average[1]:.1f} at the end "
        f"(machine shared with other work when above the core count); run took {report.runtime_s / 60:.1f} min.",
    ]


def render_text(report: Report) -> str:
    parts = [f"Training benchmark: {report.model}, {device_name(report.device)}, {report.started}"]
    parts += [
        "",
        text_table(HEADERS, rows(report)),
        "",
        text_table(["target", "goal", "measured", "result"], targets(report)),
    ]
    parts += ["", *(f"- {note}" for note in notes(report))]
    return "\n".join(parts)


def render_markdown(report: Report, gpu_note: str) -> str:
    lines = [
        "## Training: our LoRA job vs a plain Hugging Face Trainer",
        "",
        f"Run {report.started} with `{command('train', *sys.argv[1:])}`.",
        "",
        markdown_table(HEADERS, rows(report)),
        "",
        "### Targets",
        "",
        markdown_table(["target", "goal", "measured", "result"], targets(report)),
        "",
        "### Notes",
        "",
        *(f"- {note}" for note in notes(report)),
    ]
    if gpu_note:
        lines += ["", gpu_note]
    return "\n".join(lines)


GPU_NOTE = (
    "**GPU: not measured here**: no GPU machine was available when this section was written, so the "
    "2x target and the H100 target are unmeasured. On a CUDA machine (a venv with a CUDA build of "
    "torch and this project's requirements), run:\n\n"
    "```\n"
    f"{command('train', '--device cuda')}                 # SmolLM2-135M, 50/200/1000 pairs\n"
    f"{command('train', '--device cuda --qwen-shaped')}   # random Qwen2.5-0.5B shape: the H100 target\n"
    "```\n\n"
    "On a GPU both sides load the model in bf16 with SDPA attention (ml.training's GPU settings)."
)


# --- Main --------------------------------------------------------------------------------------


def measure(report: Report, base_model: str) -> None:
    budget = (report.max_seconds, report.sample_steps)
    progress("warming up (model code import, weights into the page cache)")
    warm_up(base_model, report.device)
    for size in report.sizes:
        examples = demo_examples(size)
        lengths = lengths_of(base_model, examples, report.config)
        ordered = sorted(lengths)
        report.length_stats[size] = (ordered[0], ordered[len(ordered) // 2], ordered[-1])
        # Alternate who goes first, so drift in a shared machine's load does not favour one side.
        sides = [("ours", run_ours), ("HF Trainer", run_baseline)]
        for name, run in sides if len(report.runs) % 4 == 0 else sides[::-1]:
            progress(f"{size} pairs: {name}")
            with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
                result = run(base_model, examples, report.config, report.device, lengths, budget, Path(work))
            report.runs.append(result)
            star = (
                f", extrapolated from {result.steps_timed}/{result.steps} steps"
                if result.extrapolated
                else ""
            )
            progress(f"  {result.seconds:.1f} s, {result.tokens_per_second:.0f} tokens/s{star}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 pairs on a tiny random model")
    parser.add_argument("--sizes", help="comma-separated pair counts (default 50,200,1000; quick: 16)")
    parser.add_argument(
        "--max-seconds", type=float, default=90.0, help="per run; longer runs are sampled and extrapolated"
    )
    parser.add_argument("--sample-steps", type=int, default=4, help="optimizer steps timed in a sampled run")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, help=f"both trainers (default {TrainingConfig.batch_size})")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--base-model", help="model folder or id (default: BASE_MODEL or the bundled SmolLM2)"
    )
    parser.add_argument("--qwen-shaped", action="store_true", help="random-weight Qwen2.5-0.5B-shaped model")
    parser.add_argument(
        "--docs", type=Path, help=f"Markdown to update (default: {DOCS.relative_to(ROOT)}, full runs)"
    )
    args = parser.parse_args()
    if args.sample_steps < 2:
        parser.error("--sample-steps must be at least 2: the first step is left out of the rate")

    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    default_sizes = "16" if args.quick else ",".join(map(str, DEFAULT_SIZES))
    config = replace(TrainingConfig(), epochs=1)
    if args.batch_size:
        config = replace(config, batch_size=args.batch_size)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-model-") as scratch:
        if args.quick:
            base_model = str(build_tiny(Path(scratch) / "tiny"))
        else:
            base_model = args.base_model or default_base_model()
        if args.qwen_shaped:
            progress("building a random-weight Qwen2.5-0.5B-shaped model")
            base_model = str(build_qwen_shaped(Path(scratch) / "qwen2.5-0.5b-shaped", base_model))
        model = "random Qwen2.5-0.5B-shaped" if args.qwen_shaped else Path(base_model).name
        report = Report(
            model="tiny random Llama (quick)" if args.quick else model,
            device=device,
            sizes=[int(s) for s in (args.sizes or default_sizes).split(",")],
            config=config,
            max_seconds=args.max_seconds,
            sample_steps=args.sample_steps,
            quick=args.quick,
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        measure(report, base_model)
    report.load_average = (load_before, os.getloadavg()[0])
    report.runtime_s = time.monotonic() - started
    print(render_text(report))
    docs = args.docs or (None if args.quick else DOCS)
    if docs:
        write_section(docs, SECTION, render_markdown(report, "" if device.startswith("cuda") else GPU_NOTE))
        print(f"\nWrote {docs}")


if __name__ == "__main__":
    main()
