"""Test fixtures. pyproject.toml gives tests their own DATA_DIR: own embedded PostgreSQL and Redis."""

import os

import django_rq
import pytest

from console import embedded
from console.knowledge import indexing
from console.knowledge.models import Collection, Document


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need CUDA: without it they are skipped, and say why."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (the CPU path is tested without one)")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """Stop the embedded PostgreSQL and Redis this run started, unless another process uses them.

    Servers that were already running when the run began (a developer's, another test run's)
    stay up, and so do ones this run started that a test run begun later still uses:
    console.embedded.stop_servers_started_here explains how "uses" is known safely.
    """
    if embedded.started_here():
        from django.db import connections

        connections.close_all()
        embedded.stop_servers_started_here()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own, so test runs started side by side never clobber each other."""
    from django.conf import settings

    test = settings.DATABASES["default"].setdefault("TEST", {})
    test["NAME"] = f"test_{settings.DATABASES['default']['NAME']}_{os.getpid()}"


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


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """A tiny random causal LM folder (real transformers code paths, no weights to download)."""
    from tests.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_adapter(tiny_llm, tmp_path_factory):
    """A random LoRA adapter for `tiny_llm`, as adapter_model.safetensors."""
    from tests.tiny_models import build_tiny_adapter

    return build_tiny_adapter(tiny_llm, tmp_path_factory.mktemp("tiny-adapter"))


@pytest.fixture
def use_tiny_llm(settings, tiny_llm):
    """Answer with the tiny model: greedy, a few tokens, local back end; adapter cache cleared."""
    from console.training.adapters import forget_active_adapter

    settings.BASE_MODEL = str(tiny_llm)
    settings.GENERATOR = "local"
    settings.GENERATION_MAX_NEW_TOKENS = 8
    settings.GENERATION_TEMPERATURE = 0.0
    forget_active_adapter()
    yield tiny_llm
    forget_active_adapter()


@pytest.fixture
def collection(db):
    return Collection.objects.create(name="Handbook", slug="handbook")


@pytest.fixture
def add_document():
    """Register bytes as a document and index it in-process; returns the fresh Document."""

    def add(collection: Collection, source: str, data: bytes | str) -> Document:
        if isinstance(data, str):
            data = data.encode()
        registration = indexing.register_file(collection, source, data)
        if registration.changed:
            return indexing.index_document(registration.document.pk)
        return Document.objects.get(pk=registration.document.pk)

    return add


@pytest.fixture
def answer_queue():
    """The real `answer` queue on the test Redis, emptied before and after the test."""
    queue = django_rq.get_queue("answer")
    queue.empty()
    yield queue
    queue.empty()


@pytest.fixture
def run_answer_worker(answer_queue):
    """Drain the answer queue with a real RQ worker (in-process, burst mode)."""
    from rq import SimpleWorker

    def run() -> None:
        SimpleWorker([answer_queue], connection=answer_queue.connection).work(burst=True)

    return run


@pytest.fixture
def answer_worker(answer_queue):
    """A real RQ worker answering in a background thread for the whole test, as `rqworker answer`
    does in production; stopped (after finishing its job) at teardown."""
    import threading

    from rq import SimpleWorker
    from rq.timeouts import TimerDeathPenalty

    class ThreadWorker(SimpleWorker):
        death_penalty_class = TimerDeathPenalty  # SIGALRM works in the main thread only

        def _install_signal_handlers(self) -> None:  # likewise signal handlers
            pass

    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            worker = ThreadWorker([answer_queue], connection=answer_queue.connection)
            worker.work(burst=True, logging_level="WARNING")
            stop.wait(0.05)

    thread = threading.Thread(target=loop, name="answer-worker", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=60)
