"""RQ entry points for the `train` queue (run by console.workers.SpawnWorker). They take ids."""

from __future__ import annotations

from types import TracebackType

from redis import Redis
from rq.job import Job

from console.training import runs
from console.workers import failure_reason


def train(run_id: int) -> str:
    return runs.run_training(run_id).status


def train_failed(
    job: Job,
    connection: Redis,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> None:
    """on_failure callback: a run whose job raised, timed out or whose process died is failed."""
    runs.mark_failed(job.args[0], failure_reason(exc_type, exc_value))
