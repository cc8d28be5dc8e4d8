"""The RQ worker class every queue runs (`rqworker --worker-class console.workers.Worker`).

RQ calls a job's `on_failure` callback when the job raises, and when a dead worker's job is
found abandoned; it does not when only the forked work-horse dies (OOM killer, SIGKILL).
This worker closes that gap, so a job's rows are always marked failed with a reason.
"""

from __future__ import annotations

from rq import Worker as RQWorker
from rq.callbacks import execute_failure_callback
from rq.exceptions import AbandonedJobError


class Worker(RQWorker):
    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        error = AbandonedJobError(f"the worker process died (wait status {ret_val})")
        try:
            execute_failure_callback(job, self.death_penalty_class, AbandonedJobError, error, None)
        except Exception:
            self.log.exception("failure callback for job %s raised", job.id)
