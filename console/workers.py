"""The RQ worker classes the queues run.

`Worker` (forking; every queue by default, through settings.RQ["WORKER_CLASS"]) and
`SpawnWorker` (a fresh interpreter per job; the `train` queue, so CUDA is never initialised in
a process that then forks). RQ calls a job's `on_failure` callback when the job raises and when
a dead worker's job is found abandoned, but not when only the work-horse process dies (OOM
killer, SIGKILL): both classes close that gap, so a job's rows are always marked failed.

Those callbacks run in the worker process itself and open database connections there; `Worker`
closes them before it forks a work-horse, which would otherwise share the connection's socket:
the first horse to close it would leave every later one a dead connection, and the worker would
fail every job after its first killed horse.
"""

from __future__ import annotations

import os

import django
from django.apps import apps
from django.db import connections
from rq.callbacks import execute_failure_callback
from rq.exceptions import AbandonedJobError
from rq.worker import SpawnWorker as RQSpawnWorker
from rq.worker import Worker as RQWorker

if not apps.ready:  # a spawned work-horse imports this module before anything else of ours
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    django.setup()


def failure_reason(exc_type: type[BaseException], exc_value: BaseException) -> str:
    """Why a job failed, for its rows' error: the exception, or, for a job whose whole worker died
    (RQ's clean-up of abandoned jobs passes an AbandonedJobError without a message), what happened."""
    if issubclass(exc_type, AbandonedJobError) and not str(exc_value):
        return "AbandonedJobError: its worker stopped (killed, or its machine lost) before the job finished"
    return f"{exc_type.__name__}: {exc_value}"


class _FailsJobsOfDeadHorses(RQWorker):
    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        error = AbandonedJobError(f"the worker process died (wait status {ret_val})")
        try:
            execute_failure_callback(job, self.death_penalty_class, AbandonedJobError, error, None)
        except Exception:
            self.log.exception("failure callback for job %s raised", job.id)


class Worker(_FailsJobsOfDeadHorses):
    def fork_work_horse(self, job, queue):
        connections.close_all()  # never share a connection with the horse (see the docstring)
        super().fork_work_horse(job, queue)


class SpawnWorker(_FailsJobsOfDeadHorses, RQSpawnWorker):
    pass
