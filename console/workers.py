"""The RQ worker classes the queues run.

`Worker` (forking; every queue by default, through settings.RQ["WORKER_CLASS"]),
`AnswerWorker` (jobs run in the worker's own process; the `answer` queue, so the models stay
loaded between questions) and `SpawnWorker` (a fresh interpreter per job; the `train` queue, so
CUDA is never initialised in a process that then forks). RQ calls a job's `on_failure` callback when the job raises and when
a dead worker's job is found abandoned, but not when only the work-horse process dies (OOM
killer, SIGKILL): both classes close that gap, so a job's rows are always marked failed.

Those callbacks run in the worker process itself and open database connections there; `Worker`
closes them before it forks a work-horse, which would otherwise share the connection's socket:
the first horse to close it would leave every later one a dead connection, and the worker would
fail every job after its first killed horse.
"""

from __future__ import annotations

import os
import time
from typing import Any, cast

import django
from django.apps import apps
from django.db import connections
from rq.callbacks import execute_failure_callback
from rq.exceptions import AbandonedJobError
from rq.registry import StartedJobRegistry
from rq.worker import BaseWorker, SimpleWorker
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


class AnswerWorker(SimpleWorker):
    """The `answer` queue's worker: each job runs in this process, with the generator and the
    embedding model loaded once, at start-up, before the first question.

    A forking worker's work-horse starts without them and would load them again for every
    question (seconds on a CPU, more than the answer itself). The price of no fork: a question
    that kills the process takes the worker with it; the question stays written down and is
    answered again once the process manager restarts the worker (abandoned-job callback, sweeper).
    """

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from console.conversations.answering import warm_up

        started = time.monotonic()
        try:
            warm_up()
        except Exception:  # a question would hit the same error, and answer it with an apology
            self.log.exception("warming up the answer models failed; each question will try again")
        else:
            self.log.info("answer models loaded in %.1f s", time.monotonic() - started)
        for worker in dead_workers_here(self):
            self.log.warning("worker %s (PID %s) died; its question is queued again", worker.name, worker.pid)
            abandon(worker)
        return super().work(*args, **kwargs)


def dead_workers_here(me: BaseWorker) -> list[BaseWorker]:
    """Workers of `me`'s queues registered from this host whose process is gone, or whose PID is
    now `me`'s (a restarted container, where each worker is PID 1).

    An in-process worker killed with its job (SIGKILL, the OOM killer) leaves both registered
    until the heartbeat expires — the job's timeout plus a minute — so its question would wait
    that long; the worker that takes its place finds it at once.
    """
    found: dict[str, BaseWorker] = {}
    for queue in me.queues:
        for worker in type(me).all(connection=me.connection, queue=queue):
            if worker.name == me.name or worker.hostname != me.hostname or not worker.pid:
                continue
            if worker.pid == me.pid or not _process_exists(worker.pid):
                found[worker.name] = worker
    return list(found.values())


def abandon(worker: BaseWorker) -> None:
    """Unregister a dead worker and hand its started job to RQ's abandoned-job clean-up now, which
    moves it to the failed jobs and runs its failure callback (the question is queued again)."""
    job_id = worker.get_current_job_id()
    worker.register_death()
    if not job_id:
        return
    connection = worker.connection
    for queue in worker.queues:
        registry = StartedJobRegistry(queue.name, connection=connection)
        members = cast(list[bytes], connection.zrange(registry.key, 0, -1))
        entries = [entry for entry in members if entry.startswith(f"{job_id}:".encode())]
        if entries:
            connection.zadd(registry.key, dict.fromkeys(entries, 0), xx=True)  # expired: abandoned
            registry.cleanup()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
