"""What a job's rows say when its worker died: RQ's clean-up of an abandoned job (the whole worker
was killed, not only its work-horse) passes an AbandonedJobError without a message."""

import django_rq
import pytest
from rq.exceptions import AbandonedJobError
from rq.job import Job

from console.training import jobs
from console.training.models import TrainingRun
from console.workers import failure_reason


def test_a_job_whose_whole_worker_died_gets_a_reason_people_can_read():
    assert "worker stopped" in failure_reason(AbandonedJobError, AbandonedJobError())
    assert failure_reason(
        AbandonedJobError, AbandonedJobError("the worker process died (wait status 9)")
    ) == ("AbandonedJobError: the worker process died (wait status 9)")
    assert failure_reason(ValueError, ValueError("bad pair")) == "ValueError: bad pair"


@pytest.mark.django_db
def test_a_run_found_abandoned_says_its_worker_stopped():
    connection = django_rq.get_connection("train")
    run = TrainingRun.objects.create(name="v1", status="evaluating")
    job = Job.create("console.training.jobs.train", args=(run.pk,), connection=connection)
    jobs.train_failed(job, connection, AbandonedJobError, AbandonedJobError(), None)
    run.refresh_from_db()
    assert run.status == "failed" and "worker stopped" in run.error
