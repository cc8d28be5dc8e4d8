"""TrainingRun's state changes: each method leaves the run in one documented state."""

import pytest

from console.training import runs
from console.training.models import TrainingRun

pytestmark = pytest.mark.django_db


def _stored(run: TrainingRun) -> TrainingRun:
    return TrainingRun.objects.get(pk=run.pk)


def test_a_run_goes_from_queued_through_running_and_evaluating_to_succeeded():
    run = TrainingRun.objects.create(name="r1", error="an earlier try failed", progress=40)
    run.start()
    started = _stored(run)
    assert started.status == "running" and started.started_at and started.error == ""
    assert run.status == "running"  # the instance follows its row

    run.trained("/adapters/r1", 1234.5)
    trained = _stored(run)
    assert trained.status == "evaluating" and trained.adapter_path == "/adapters/r1"
    assert trained.tokens_per_second == 1234.5 and trained.progress == 100 and trained.evaluated == 0

    run.succeed()
    done = _stored(run)
    assert done.status == "succeeded" and done.finished_at >= done.started_at


def test_fail_records_why_and_takes_the_run_off_the_air():
    run = TrainingRun.objects.create(name="r1", status="evaluating", active=True)
    assert run.fail("RuntimeError: out of memory")
    failed = _stored(run)
    assert failed.status == "failed" and failed.error == "RuntimeError: out of memory"
    assert not failed.active and failed.finished_at


def test_a_succeeded_run_is_never_failed():
    run = TrainingRun.objects.create(name="r1", status="succeeded", active=True)
    assert not run.fail("JobTimeoutException: late callback")
    runs.mark_failed(run.pk, "JobTimeoutException: late callback")
    kept = _stored(run)
    assert kept.status == "succeeded" and kept.active and kept.error == ""
    assert run.status == "succeeded"


def test_requeue_clears_the_failure():
    run = TrainingRun.objects.create(name="r1", status="failed", error="worker lost", progress=37)
    run.requeue()
    queued = _stored(run)
    assert queued.status == "queued" and queued.error == "" and queued.progress == 0


def test_mark_failed_by_id_ignores_a_deleted_run():
    runs.mark_failed(999_999, "RuntimeError: gone")
    assert not TrainingRun.objects.exists()
