"""RQ entry points for the `train` queue (run by console.workers.SpawnWorker). They take ids."""

from __future__ import annotations

from console.training import runs


def train(run_id: int) -> str:
    return runs.run_training(run_id).status


def train_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """on_failure callback: a run whose job raised, timed out or whose process died is failed."""
    runs.mark_failed(job.args[0], f"{exc_type.__name__}: {exc_value}")
