"""Test set-up: a private DATA_DIR (own embedded PostgreSQL and Redis), real services only."""

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

import django_rq  # noqa: E402
import pytest  # noqa: E402


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
