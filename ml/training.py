"""LoRA training from plain data: approved pairs in, a safetensors adapter folder out.

Examples are rendered by `ml.prompting.build_messages` and the model's chat template exactly as
inference renders them, and the loss covers only the answer and its end-of-turn token. Batches
are grouped by length and padded to their own longest example, so little compute goes to padding.
Checkpoints (LoRA weights, optimizer, scheduler, RNG, step) let a retried run resume and end
with the same weights as an uninterrupted one. The adapter is staged in a hidden sibling folder
and renamed into place when complete, so `output_dir` is either a whole adapter or absent.
torch, transformers and peft are imported inside functions: importing this module never touches
CUDA, so an RQ worker can import it before forking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ml import checkpoints
from ml.checkpoints import RngState, TrainerState
from ml.files import make_world_readable, write_atomically
from ml.prompting import DEFAULT_SYSTEM_PROMPT, ContextChunk, build_messages, neutralise

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt and padding)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINT_FOLDER = "checkpoint"

Features = tuple[list[int], list[int]]  # input_ids, labels


class ExampleTooLong(ValueError):
    """An example whose answer cannot fit in `max_length` even with its context trimmed."""


class CheckpointMismatch(ValueError):
    """A saved trainer state that belongs to another run (other data, model or settings)."""


@dataclass(frozen=True)
class Example:
    """One approved pair, with the context exactly as the model saw it."""

    question: str
    answer: str
    context: list[ContextChunk] = field(default_factory=list)
    system: str = ""  # "" -> DEFAULT_SYSTEM_PROMPT


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults suit 50-5,000 pairs on a small instruct model (README: the demo run, where 2e-4 with
    batches of 8 hardly moved SmolLM2 on 92 pairs and these gave every answer the house voice)."""

    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 4
    gradient_accumulation: int = 1
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    max_length: int = 1024
    seed: int = 42
    checkpoint_every: int = 50  # optimizer steps
    warmup_ratio: float = 0.05


@dataclass(frozen=True)
class TrainingResult:
    """`tokens` (non-padding) and `seconds` (start to saved adapter) count this call only.

    `train_loss` is the mean loss per answer token over the last epoch's steps.
    """

    adapter_path: Path
    steps: int
    train_loss: float
    tokens: int
    seconds: float
    tokens_per_second: float
    resumed_from_step: int
    examples: int = 0
    skipped_too_long: int = 0


# --- examples to token ids ---------------------------------------------------------------------


def example_messages(example: Example, chunks: Sequence[ContextChunk]) -> list[dict[str, str]]:
    """The messages an example is trained on: what inference asks with this system prompt and context."""
    return build_messages(example.system or DEFAULT_SYSTEM_PROMPT, chunks, [], example.question)


def _completion_text(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], prompt: str, answer: str
) -> str:
    """The answer as the chat template closes an assistant turn, e.g. `answer<|im_end|>`.

    Whitespace after the end-of-turn token is left out: generation stops at that token.
    Templates that render the turn differently in history fall back to answer + eos.
    """
    full = _chat_text(tokenizer, [*messages, {"role": "assistant", "content": answer}])
    if full.startswith(prompt) and answer in full[len(prompt) :]:
        return full[len(prompt) :].rstrip()
    return answer + (tokenizer.eos_token or "")


def _chat_text(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], *, add_generation_prompt: bool = False
) -> str:
    """The chat template applied to `messages`, as text (transformers types the result wider)."""
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    return cast(str, text)


def tokenize_example(tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int) -> Features:
    """input_ids and labels for one example; labels are IGNORE_INDEX on every prompt token.

    The prompt is what inference feeds the model (build_messages + chat template with the
    generation prompt). When the whole does not fit in `max_length`, the lowest-ranked context
    chunks are dropped (keeping at least one); the answer is never cut: ExampleTooLong instead.
    """
    answer = neutralise(example.answer).strip()
    if not answer:
        raise ValueError(
            f"Example {example.question[:60]!r} has an empty answer: give it one or leave it out."
        )
    keep = len(example.context)
    while True:
        messages = example_messages(example, example.context[:keep])
        prompt = _chat_text(tokenizer, messages, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion = _completion_text(tokenizer, messages, prompt, answer)
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) + len(completion_ids) <= max_length:
            return prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids
        if keep <= 1:
            raise ExampleTooLong(
                f"Example {example.question[:60]!r} needs {len(prompt_ids) + len(completion_ids)} "
                f"tokens with {keep} context chunk(s), more than max_length={max_length}."
            )
        keep -= 1


def tokenize_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int
) -> tuple[list[Features], int]:
    """The features of every example that fits, and how many were skipped as too long."""
    features: list[Features] = []
    skipped = 0
    for example in examples:
        try:
            features.append(tokenize_example(tokenizer, example, max_length))
        except ExampleTooLong as error:
            skipped += 1
            logger.warning("Skipping a training example: %s", error)
    return features, skipped


# --- batching ----------------------------------------------------------------------------------


def plan_batches(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Indices in batches of similar length, in a seeded random order; a pure function of its input.

    Examples are shuffled, then stably sorted by length (ties stay shuffled), cut into batches,
    and the batches shuffled. The plan depends only on (seed, epoch), so a resumed run replays it.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda index: lengths[index])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def padding_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Pad tokens needed when each batch is padded to its own longest example."""
    return sum(
        max(lengths[i] for i in batch) * len(batch) - sum(lengths[i] for i in batch) for batch in batches
    )


def collate(features: Sequence[Features], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors as wide as the longest example in this batch."""
    import torch

    width = max(len(ids) for ids, _ in features)
    input_ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(features):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


# --- model, optimizer, checkpoints -------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too, lazily


def load_lora_model(
    base_model: str, config: TrainingConfig, device: str
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """Base weights (bf16 + SDPA on a GPU, fp32 on a CPU) with fresh LoRA layers, and the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # callers report their own progress
    on_gpu = device.startswith("cuda")
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    if not tokenizer.chat_template:
        raise ValueError(f"{base_model} has no chat template: use an instruct/chat model.")
    base = AutoModelForCausalLM.from_pretrained(
        base_model,
        local_files_only=True,
        dtype=torch.bfloat16 if on_gpu else torch.float32,
        attn_implementation="sdpa" if on_gpu else None,
    )
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora).to(device)
    model.train()
    return model, tokenizer


def _schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup then linear decay; no step runs at learning rate 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def fingerprint(base_model: str, config: TrainingConfig, features: Sequence[Features]) -> str:
    """What a saved state must match to be resumed: the base model, the training settings but
    the checkpoint cadence, and the data (input ids and labels). Stable across releases: a
    checkpoint written by an older version still resumes."""
    digest = hashlib.sha256()
    settings = [base_model, {**asdict(config), "checkpoint_every": None}]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for ids, labels in features:
        digest.update(json.dumps([ids, labels]).encode())
    return digest.hexdigest()


class Trainer:
    """The training loop and its state: model, optimizer, scheduler, step, losses, RNG.

    state_dict() and load_state_dict() hand that state over as a plain dict (ml.checkpoints
    writes it to files), so a run resumed from it ends with the weights of an uninterrupted one.
    """

    def __init__(
        self,
        model: PeftModel,
        features: list[Features],
        pad_id: int,
        config: TrainingConfig,
        device: str,
        fingerprint: str,
    ) -> None:
        import torch

        self.model, self.features, self.pad_id = model, features, pad_id
        self.config, self.device, self.fingerprint = config, device, fingerprint
        self.lengths = [len(ids) for ids, _ in features]
        self.batches_per_epoch = math.ceil(len(features) / config.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.gradient_accumulation)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        warmup = math.ceil(self.total_steps * config.warmup_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(self.total_steps, warmup)
        )
        self.step = 0
        self.losses: list[float] = []
        self.tokens = 0

    def micro_batches(self, step: int) -> list[list[int]]:
        epoch, within = divmod(step, self.steps_per_epoch)
        plan = plan_batches(self.lengths, self.config.batch_size, seed=self.config.seed, epoch=epoch)
        accumulation = self.config.gradient_accumulation
        return plan[within * accumulation : (within + 1) * accumulation]

    def train_step(self) -> float:
        """One optimizer step; the loss is the mean over the answer tokens of all its micro-batches."""
        import torch

        batches = [
            collate([self.features[i] for i in batch], self.pad_id) for batch in self.micro_batches(self.step)
        ]
        answer_tokens = sum(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) for batch in batches)
        total = 0.0
        for batch in batches:
            self.tokens += int(batch["attention_mask"].sum())
            batch = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
            targets = batch["labels"][:, 1:]
            keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
            keep[:, :-1] = targets != IGNORE_INDEX  # logits only where an answer token is predicted
            logits = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                logits_to_keep=keep,
                use_cache=False,
            ).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets[targets != IGNORE_INDEX],
                reduction="sum",
            )
            (loss / answer_tokens).backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.losses.append(total / answer_tokens)
        return self.losses[-1]

    def state_dict(self) -> TrainerState:
        """Everything needed to carry on from this step, as a plain dict.

        Like torch's own state_dict, its tensors may share memory with the live trainer: save or
        copy it before training on.
        """
        import numpy as np
        import torch

        rng = RngState(
            python=random.getstate(),
            numpy=np.random.get_state(legacy=True),
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else [],
        )
        return TrainerState(
            model={name: p.detach() for name, p in self.trainable_parameters().items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            step=self.step,
            losses=list(self.losses),
            rng=rng,
            config=asdict(self.config),
            fingerprint=self.fingerprint,
        )

    def load_state_dict(self, state: TrainerState) -> None:
        """Carry on from `state`; CheckpointMismatch (and nothing changed) if another run saved it."""
        import numpy as np
        import torch

        if state["fingerprint"] != self.fingerprint:
            raise CheckpointMismatch("The saved state was made for other data or settings.")
        with torch.no_grad():
            for name, param in self.trainable_parameters().items():
                param.copy_(state["model"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step, self.losses = state["step"], list(state["losses"])

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    def last_epoch_loss(self) -> float:
        recent = self.losses[-self.steps_per_epoch :]
        return sum(recent) / len(recent)


def _resume(trainer: Trainer, folder: Path) -> int:
    """Load the latest checkpoint in `folder` into `trainer`: the step it resumes at, 0 if none fits."""
    state = checkpoints.load_latest(folder)
    if state is None:
        return 0
    try:
        trainer.load_state_dict(state)
    except CheckpointMismatch:
        logger.warning("Discarding checkpoints in %s: they were made for other data or settings", folder)
        checkpoints.discard(folder)
        return 0
    return trainer.step


def _save_checkpoint(trainer: Trainer, folder: Path) -> None:
    checkpoints.save(trainer.state_dict(), folder)
    logger.info("Checkpoint at step %d/%d in %s", trainer.step, trainer.total_steps, folder)


def _save_adapter(model: PeftModel, output_dir: Path) -> None:
    """adapter_config.json + adapter_model.safetensors only, renamed into place when complete."""

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        for extra in staging.iterdir():  # peft adds a README model card
            if extra.name not in ADAPTER_FILES:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        make_world_readable(staging)  # serving processes may run as other users

    write_atomically(output_dir, write)


# --- the entry point ---------------------------------------------------------------------------


def train_adapter(
    base_model: str | Path,
    examples: Sequence[Example],
    output_dir: Path,
    *,
    config: TrainingConfig = TrainingConfig(),  # noqa: B008 - frozen, so sharing the default is safe
    work_dir: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    device: str | None = None,
) -> TrainingResult:
    """Train a LoRA adapter on `examples` and write it to `output_dir`, which must not exist yet.

    Checkpoints go to `work_dir` (default: a hidden sibling of output_dir) every
    `config.checkpoint_every` steps; calling again with the same data and settings resumes from
    the last one. `progress(step, total_steps, loss)` is called after every optimizer step; an
    exception it raises stops training (the checkpoint is kept, output_dir is not created).
    """
    import torch

    started = time.perf_counter()
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(
            f"Adapter folder {output_dir} already exists: train into a new folder, or delete it first."
        )
    default_work_dir = work_dir is None
    work_dir = output_dir.with_name(f".{output_dir.name}.work") if work_dir is None else Path(work_dir)
    checkpoint = work_dir / CHECKPOINT_FOLDER
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    _seed_everything(config.seed)
    model, tokenizer = load_lora_model(str(base_model), config, device)
    features, skipped = tokenize_examples(tokenizer, examples, config.max_length)
    if not features:
        raise ValueError(
            f"No training examples fit in max_length={config.max_length} tokens "
            f"({len(examples)} given, {skipped} too long): add pairs or raise max_length."
        )
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    trainer = Trainer(model, features, pad_id, config, device, fingerprint(str(base_model), config, features))
    resumed_from = _resume(trainer, checkpoint)
    logger.info(
        "Training %s on %d examples (%d skipped as too long), %d steps on %s, resuming at step %d",
        base_model, len(features), skipped, trainer.total_steps, device, resumed_from,
    )  # fmt: skip
    while trainer.step < trainer.total_steps:
        loss = trainer.train_step()
        if trainer.step % config.checkpoint_every == 0 and trainer.step < trainer.total_steps:
            _save_checkpoint(trainer, checkpoint)
        if progress:
            progress(trainer.step, trainer.total_steps, loss)
    _save_adapter(model, output_dir)
    shutil.rmtree(checkpoint, ignore_errors=True)
    if default_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.perf_counter() - started
    logger.info("Saved adapter %s after %d steps in %.1f s", output_dir, trainer.step, seconds)
    return TrainingResult(
        adapter_path=output_dir,
        steps=trainer.total_steps,
        train_loss=trainer.last_epoch_loss(),
        tokens=trainer.tokens,
        seconds=seconds,
        tokens_per_second=trainer.tokens / seconds if seconds > 0 else 0.0,
        resumed_from_step=resumed_from,
        examples=len(features),
        skipped_too_long=skipped,
    )
