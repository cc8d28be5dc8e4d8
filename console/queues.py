"""What the RQ queues still hold: the arguments of every job waiting or running on a queue.

The sweeper (`manage.py sweep`) compares them with rows left `pending`/`queued` to find work whose
job was lost (Redis was down at enqueue, a restore) and queue it again.
"""

from __future__ import annotations

from typing import Any

import django_rq
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry


def live_job_args(queue_name: str) -> list[tuple[Any, ...]]:
    """The args of the jobs queued or running on `queue_name`; a started job whose worker died
    is first handed to RQ's abandoned-job clean-up (its failure callback runs)."""
    queue = django_rq.get_queue(queue_name)
    started = StartedJobRegistry(queue_name, connection=queue.connection)
    started.cleanup()
    args = []
    for job_id in [*queue.job_ids, *started.get_job_ids(cleanup=False)]:
        try:
            args.append(tuple(Job.fetch(job_id, connection=queue.connection).args))
        except NoSuchJobError:
            continue
    return args
