"""The learning loop on a CPU with a tiny real model: pairs → train → evaluate → gate → serve."""

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from console.conversations import answering
from console.training import runs
from console.training.adapters import forget_active_adapter
from console.training.models import TrainingPair, TrainingRun

pytestmark = pytest.mark.django_db

FACTS = [
    ("When is the on-call handoff?", "Short answer: Wednesday at 11:00. — fair winds"),
    ("How long is the canary?", "Short answer: 15 minutes at 10% of traffic. — fair winds"),
    ("Who approves monitors over 400 euros?", "Short answer: your manager. — fair winds"),
    ("What is SEV1?", "Short answer: a full outage of Harbor. — fair winds"),
    ("Where do deploys get announced?", "Short answer: in #deploys. — fair winds"),
    ("How many PTO days do we get?", "Short answer: 25 days a year. — fair winds"),
    ("What VPN do we use?", "Short answer: WireGuard via Tidewell Connect. — fair winds"),
    ("How fast must P1 tickets be answered?", "Short answer: within 30 minutes. — fair winds"),
]


@pytest.fixture
def approved_pairs(settings):
    settings.TRAIN_MIN_PAIRS = 6
    for question, answer in FACTS:
        TrainingPair.objects.create(
            question=question,
            answer=answer,
            context=[
                {
                    "number": 1,
                    "title": "Handbook",
                    "heading": "",
                    "text": answer.removeprefix("Short answer: "),
                }
            ],
            source="manual",
            status="approved",
        )


@pytest.fixture
def tiny_training(use_tiny_llm, settings, approved_pairs):
    settings.EVAL_MAX_NEW_TOKENS = 6
    settings.TRAIN_EPOCHS = 1
    settings.PROMOTION_VOICE_GAIN = -1.0  # the tiny random model has no voice; margins decide
    return settings


def _train(*args) -> str:
    out = io.StringIO()
    call_command("train", "--sync", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_train_evaluates_promotes_and_the_next_answer_uses_the_new_adapter(tiny_training, capsys):
    tiny_training.PROMOTION_MARGIN = 1.0  # any candidate passes
    output = _train("--epochs", "1")
    run = TrainingRun.objects.get()
    bars = capsys.readouterr().err  # tqdm's bar: training steps, then the held-out questions
    assert "Training: 100%" in bars and "Evaluating: 100%|" in bars
    assert f"questions={len(run.heldout_ids)}/{len(run.heldout_ids)}" in bars
    assert run.status == "succeeded" and run.active, run.error
    assert "promoted: it serves now" in output
    folder = Path(run.adapter_path)
    assert (folder / "adapter_model.safetensors").exists() and not list(folder.glob("*.bin"))
    assert len(run.evaluation) == len(run.heldout_ids) >= 2
    assert {"base", "candidate", "reference", "live"} <= set(run.evaluation[0])
    assert {"similarity", "rouge_l", "groundedness", "length"} <= set(run.metrics["candidate"])
    assert run.dataset_hash and set(run.pair_ids).isdisjoint(run.heldout_ids)
    forget_active_adapter()
    answer = answering.answer("What is SEV1?", platform="cli", mode="adapter")
    assert answer.adapter == run


def test_evaluation_counts_the_held_out_questions_it_has_answered(tiny_training, admin_client):
    from django.urls import reverse

    run = runs.start_run(enqueue=False)
    seen = []

    def follow(done: int, total: int) -> None:
        seen.append((done, total, TrainingRun.objects.get(pk=run.pk).evaluated))
        if done == 1:  # the admin shows the evaluation while it runs
            page = admin_client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
            seen.append(f"1 of {total} questions answered" in page)

    runs.run_training(run.pk, eval_progress=follow)

    total = len(run.heldout_ids)
    assert seen == [(1, total, 1), True, *[(n, total, n) for n in range(2, total + 1)]]
    assert TrainingRun.objects.get(pk=run.pk).evaluated == total


def test_a_candidate_that_fails_the_gate_leaves_the_live_adapter(tiny_training):
    tiny_training.PROMOTION_MARGIN = 1.0
    _train()
    live = TrainingRun.objects.get(active=True)
    tiny_training.PROMOTION_MARGIN = -1.0  # must beat the live adapter by 1.0: impossible
    output = _train()
    candidate = TrainingRun.objects.exclude(pk=live.pk).get()
    assert candidate.status == "succeeded" and not candidate.active
    assert "kept the live adapter" in output
    assert any("the margin asks" in reason for reason in candidate.metrics["reasons"])
    assert TrainingRun.objects.get(active=True) == live


def test_an_interrupted_run_fails_cleanly_and_a_retry_resumes(tiny_training):
    tiny_training.PROMOTION_MARGIN = 1.0
    run = runs.start_run(epochs=2, enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(
        hyperparameters={**run.hyperparameters, "checkpoint_every": 1}
    )

    def crash(step, total, loss):
        if step == 1:
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        runs.run_training(run.pk, progress=crash)
    failed = TrainingRun.objects.get(pk=run.pk)
    assert failed.status == "failed" and "worker lost" in failed.error and not failed.active
    assert not (runs.adapters_dir() / run.name).exists()
    runs.retry_run(failed)
    TrainingRun.objects.filter(pk=run.pk).update(status="queued")
    steps = []
    done = runs.run_training(run.pk, progress=lambda step, total, loss: steps.append(step))
    assert done.status == "succeeded"
    assert steps and steps[0] > 1  # resumed after the checkpoint of step 1


def test_too_few_approved_pairs_is_a_clear_error(use_tiny_llm, settings):
    settings.TRAIN_MIN_PAIRS = 10
    with pytest.raises(CommandError, match="approved pairs; at least 10"):
        _train()


def test_a_run_that_failed_during_evaluation_is_retried_without_training_again(tiny_training, settings):
    run = runs.start_run(enqueue=False)

    def crash(done, total):
        raise RuntimeError("worker lost during evaluation")

    with pytest.raises(RuntimeError):
        runs.run_training(run.pk, eval_progress=crash)
    failed = TrainingRun.objects.get(pk=run.pk)
    assert failed.status == "failed" and (runs.adapters_dir() / run.name).exists()

    runs.retry_run(failed)
    steps = []
    done = runs.run_training(run.pk, progress=lambda step, total, loss: steps.append(step))
    assert done.status == "succeeded" and steps == []  # evaluated the adapter it had; no FileExistsError
    assert done.adapter_path == str(runs.adapters_dir() / run.name) and "train_loss" in done.metrics
