import numpy as np
from django.conf import settings

from ml import embeddings


def test_embed_keeps_the_callers_order_while_batching_longest_first():
    texts = [
        "short",
        "a much longer sentence about the on-call rotation and who gets paged after thirty minutes",
        "medium length text about expenses",
        "",
        "vpn",
    ]
    progress = []
    batched = embeddings.embed(
        settings.EMBEDDING_MODEL, texts, batch_size=2, progress=lambda d, t: progress.append((d, t))
    )
    one_by_one = np.vstack([embeddings.embed(settings.EMBEDDING_MODEL, [t]) for t in texts])
    assert batched.shape == (5, 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.sum(batched * one_by_one, axis=1), 1.0, atol=1e-4)
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_embed_of_nothing_is_an_empty_matrix_of_the_right_width():
    assert embeddings.embed(settings.EMBEDDING_MODEL, []).shape == (0, 384)
