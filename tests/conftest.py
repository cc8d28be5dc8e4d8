"""Test fixtures. pyproject.toml gives tests their own DATA_DIR: own embedded PostgreSQL and Redis."""

import django_rq
import pytest


@pytest.fixture
def ingest_queue():
    """The real `ingest` queue on the test Redis, emptied before and after the test."""
    queue = django_rq.get_queue("ingest")
    queue.empty()
    yield queue
    queue.empty()


@pytest.fixture
def run_ingest_worker(ingest_queue):
    """Drain the ingest queue with a real RQ worker (in-process, burst mode)."""
    from rq import SimpleWorker

    def run() -> None:
        worker = SimpleWorker([ingest_queue], connection=ingest_queue.connection)
        worker.work(burst=True)

    return run


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
