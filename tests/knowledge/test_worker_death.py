"""A worker process killed mid-job leaves its documents failed with a reason, old chunks intact."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from console.knowledge import indexing
from console.knowledge.models import Document
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD
from tests.subprocesses import database_url_for_tests, wait_until


@pytest.mark.django_db(transaction=True)
def test_killed_work_horse_leaves_its_batch_failed_and_old_chunks_serving(
    collection, add_document, ingest_queue, settings
):
    settings.MEDIA_ROOT = settings.DATA_DIR / "media"  # where the worker process will look
    document = add_document(collection, "oncall.md", ONCALL_MD)
    old_chunks = set(document.chunks.values_list("id", flat=True))
    registration = indexing.register_file(
        collection, "oncall.md", (ONCALL_MD + "\nNew paragraph.\n").encode()
    )
    other = indexing.register_file(collection, "expenses.md", EXPENSES_MD.encode()).document
    indexing.enqueue_index([registration.document, other])  # one batch; autocommit: enqueued at once

    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), REDIS_URL=settings.REDIS_URL)
    worker = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "rqworker", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: Document.objects.get(pk=document.pk).status == Document.Status.INDEXING)
        horses = psutil.Process(worker.pid).children()
        assert horses, "the worker forked no work-horse"
        for horse in horses:
            horse.send_signal(signal.SIGKILL)
        assert wait_until(lambda: Document.objects.get(pk=document.pk).status == Document.Status.FAILED)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    failed = Document.objects.get(pk=document.pk)
    assert "interrupted" in failed.error and "Re-index" in failed.error
    assert failed.version == 1
    assert set(failed.chunks.values_list("id", flat=True)) == old_chunks
    other.refresh_from_db()  # the rest of the batch fails with it, not left "indexing"
    assert other.status == Document.Status.FAILED and "interrupted" in other.error


@pytest.mark.django_db(transaction=True)
def test_spawning_worker_sets_up_django_in_a_fresh_process(collection, ingest_queue, settings):
    """The `train` queue's worker class: jobs run in a new interpreter, not a fork."""
    settings.MEDIA_ROOT = settings.DATA_DIR / "media"
    registration = indexing.register_file(collection, "oncall.md", ONCALL_MD.encode())
    indexing.enqueue_index(registration.document)
    env = dict(os.environ, DATABASE_URL=database_url_for_tests(), REDIS_URL=settings.REDIS_URL)
    subprocess.run(
        [
            sys.executable,
            str(settings.BASE_DIR / "manage.py"),
            "rqworker",
            "ingest",
            "--burst",
            "--worker-class",
            "console.workers.SpawnWorker",
        ],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert Document.objects.get(pk=registration.document.pk).status == Document.Status.INDEXED
