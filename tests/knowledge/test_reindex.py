"""A reader during re-index never sees a mix of versions or zero chunks."""

import threading

import numpy as np
import pytest

from console.knowledge import indexing
from console.knowledge.models import Collection, Document
from console.knowledge.search import search
from ml.chunking import Chunk as Piece


def _pieces(marker: str, n: int) -> list[Piece]:
    return [
        Piece(
            ordinal=i,
            heading="Runbook",
            text=f"{marker} restore step {i}",
            embed_text=f"{marker} {i}",
            token_count=8,
        )
        for i in range(n)
    ]


@pytest.mark.django_db(transaction=True)
def test_reader_during_reindex_sees_one_whole_version():
    collection = Collection.objects.create(name="Ops", slug="ops")
    document = Document.objects.create(collection=collection, source="restore.md", status="pending")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[0].tolist()
    versions = {"alpha": _pieces("alpha", 30), "beta": _pieces("beta", 40)}
    indexing.replace_chunks(document.pk, "Restore", versions["alpha"], vectors[:30])

    stop = threading.Event()
    problems: list[str] = []
    reads = {"n": 0}

    def reader():
        from django.db import connection

        try:
            while not stop.is_set():
                for method in ("vector", "fulltext"):
                    results = search(
                        "restore step", k=100, method=method, query_embedding=query, per_document=0
                    )
                    markers = {r.text.split()[0] for r in results}
                    if len(markers) != 1 or len(results) not in (30, 40):
                        problems.append(f"{method}: {len(results)} chunks, markers {markers}")
                    reads["n"] += 1
        finally:
            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(15):
            marker = "beta" if round_ % 2 == 0 else "alpha"
            pieces = versions[marker]
            indexing.replace_chunks(document.pk, "Restore", pieces, vectors[: len(pieces)])
    finally:
        stop.set()
        thread.join()
    assert reads["n"] > 5
    assert problems == []
    assert Document.objects.get(pk=document.pk).version == 16
