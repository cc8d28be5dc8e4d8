"""A training worker killed mid-run: the run is failed with the reason, nothing half-written serves."""

import os
import signal
import subprocess
import sys

import django_rq
import psutil
import pytest

from console.training import runs
from console.training.models import TrainingPair, TrainingRun
from tests.subprocesses import database_url_for_tests, wait_until


@pytest.mark.django_db(transaction=True)
def test_killed_training_horse_fails_the_run_and_leaves_the_live_adapter(
    use_tiny_llm, settings, tiny_adapter
):
    settings.TRAIN_MIN_PAIRS = 2
    live = TrainingRun.objects.create(
        name="live", status="succeeded", adapter_path=str(tiny_adapter), active=True
    )
    for i in range(6):
        TrainingPair.objects.create(
            question=f"q{i}", answer=f"answer {i}", source="manual", status="approved"
        )
    queue = django_rq.get_queue("train")
    queue.empty()
    run = runs.start_run(epochs=500)  # long enough to be killed mid-way; autocommit: queued at once
    env = dict(
        os.environ,
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        BASE_MODEL=str(use_tiny_llm),
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            str(settings.BASE_DIR / "manage.py"),
            "rqworker",
            "train",
            "--worker-class",
            "console.workers.SpawnWorker",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: TrainingRun.objects.get(pk=run.pk).step >= 2), "training never started"
        for horse in psutil.Process(worker.pid).children():
            horse.send_signal(signal.SIGKILL)
        assert wait_until(lambda: TrainingRun.objects.get(pk=run.pk).status == "failed")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        queue.empty()
    failed = TrainingRun.objects.get(pk=run.pk)
    assert "died" in failed.error and not failed.active
    assert not (runs.adapters_dir() / run.name).exists()
    assert TrainingRun.objects.get(active=True) == live
