"""A synthetic corpus for measuring search at scale: real demo chunks recombined into many more.

Embedding 100k real chunks on a CPU takes too long, so each synthetic chunk mixes three real
ones: their sentences interleaved for full text, their embeddings weighted, plus noise and
re-normalised for the vector index. The chunks are bulk-loaded with COPY and the GIN and HNSW
indexes rebuilt afterwards from their own definitions in the database.

Import after django.setup() (bench.environment.setup_django).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import time
from dataclasses import dataclass

import numpy as np
from django.db import connection
from pgvector.psycopg import register_vector

from console.knowledge.models import Chunk, Collection, Document

SYNTHETIC = "synthetic"  # the collection the synthetic documents go to
CHUNKS_PER_SYNTHETIC_DOCUMENT = 25
NOISE = 0.3  # norm of the Gaussian noise added to a mix of real embeddings (which has norm ~0.6-0.9)
INDEXES = ("chunk_search_vector_gin", "chunk_embedding_hnsw")


@dataclass(frozen=True)
class Build:
    load_s: float  # generate + COPY + tsvector
    index_s: dict[str, float]


@contextlib.contextmanager
def raw_connection():
    """A second psycopg connection to the same database, autocommit, with pgvector's binary types."""
    conn = connection.get_new_connection(connection.get_connection_params())
    conn.autocommit = True
    register_vector(conn)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class Seed:
    """The real demo chunks that synthetic ones are recombined from."""

    titles: list[str]
    headings: list[str]
    sentences: list[list[str]]
    vectors: np.ndarray


def load_seed() -> Seed:
    chunks = list(Chunk.objects.select_related("document").order_by("id"))
    return Seed(
        titles=sorted({c.document.title for c in chunks}),
        headings=[c.heading for c in chunks],
        sentences=[
            [s for s in re.split(r"(?<=[.!?])\s+|\n+", c.text) if s.strip()] or [c.text] for c in chunks
        ],
        vectors=np.array([np.asarray(c.embedding, dtype=np.float32) for c in chunks]),
    )


def synthetic_chunks(seed: Seed, count: int, rng: random.Random, nprng: np.random.Generator):
    """`count` (heading, text, vector) triples, each a random mix of three real chunks.

    The text interleaves the parents' sentences in proportion to their weights (so full text
    sees realistic vocabulary and postings); the vector is the same weighted mix of their
    embeddings plus noise, re-normalised (so it lies where real embeddings lie).
    """
    n, dim = seed.vectors.shape
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        parents = np.argsort(nprng.random((size, n)), axis=1)[:, :3]
        weights = nprng.dirichlet(np.ones(3), size)
        vectors = np.einsum("bk,bkd->bd", weights, seed.vectors[parents])
        vectors += nprng.normal(0.0, NOISE / math.sqrt(dim), vectors.shape)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for row, weight, vector in zip(
            parents.tolist(), weights.tolist(), vectors.astype(np.float32), strict=True
        ):
            main = row[int(np.argmax(weight))]
            picks = rng.choices(row, weights=weight, k=max(3, len(seed.sentences[main])))
            text = " ".join(rng.choice(seed.sentences[p]) for p in picks)
            yield seed.headings[main], text, vector


def create_documents(count: int, seed: Seed, rng: random.Random) -> list[int]:
    collection, _ = Collection.objects.get_or_create(slug=SYNTHETIC, defaults={"name": SYNTHETIC})
    offset = collection.documents.count()
    documents = Document.objects.bulk_create(
        Document(
            collection=collection,
            title=f"{rng.choice(seed.titles)} ({offset + i})",
            source=f"synthetic/{offset + i:06d}.md",
            status=Document.Status.INDEXED,
            version=1,
            progress=100,
        )
        for i in range(count)
    )
    return [d.pk for d in documents]


STAGE_SQL = """
    CREATE TEMP TABLE bench_stage (
        document_id bigint, ordinal integer, heading text, text text, token_count integer,
        embedding vector(384)
    ) ON COMMIT DROP
"""
# The same search_vector expression as indexing._fill_search_vectors; the BM25 statistics
# (knowledge_lexeme, knowledge_chunk_totals) follow through the chunk table's triggers.
INSERT_SQL = """
    INSERT INTO knowledge_chunk (document_id, ordinal, heading, text, token_count, embedding, search_vector)
    SELECT s.document_id, s.ordinal, s.heading, s.text, s.token_count, s.embedding,
           setweight(to_tsvector('english', d.title), 'A')
        || setweight(to_tsvector('english', s.heading), 'B')
        || setweight(to_tsvector('english', s.text), 'D')
      FROM bench_stage s JOIN knowledge_document d ON d.id = s.document_id
"""


def load_synthetic(conn, seed: Seed, count: int, rng: random.Random, nprng: np.random.Generator) -> None:
    """Binary COPY into a staging table, then one INSERT that computes the tsvectors."""
    document_ids = create_documents(math.ceil(count / CHUNKS_PER_SYNTHETIC_DOCUMENT), seed, rng)
    with conn.transaction():
        conn.execute(STAGE_SQL)
        with conn.cursor() as cursor, cursor.copy("COPY bench_stage FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "text", "text", "int4", "vector"])
            for i, (heading, text, vector) in enumerate(synthetic_chunks(seed, count, rng, nprng)):
                document, ordinal = divmod(i, CHUNKS_PER_SYNTHETIC_DOCUMENT)
                copy.write_row([document_ids[document], ordinal, heading, text, len(text.split()), vector])
        conn.execute(INSERT_SQL)
    conn.execute(
        """UPDATE knowledge_document d SET chunk_count = (SELECT count(*) FROM knowledge_chunk c
           WHERE c.document_id = d.id) WHERE d.id = ANY(%s)""",
        [document_ids],
    )


def grow_corpus(size: int, seed: Seed, rng: random.Random, nprng: np.random.Generator) -> Build:
    """Add synthetic chunks up to `size` in all, then rebuild the indexes from their own definitions.

    Building HNSW once after a bulk load is much faster than inserting into it row by row.
    """
    with raw_connection() as conn:
        definitions = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'knowledge_chunk' "
                "AND indexname = ANY(%s)",
                [list(INDEXES)],
            ).fetchall()
        )
        for name in INDEXES:
            conn.execute(f"DROP INDEX {name}")
        started = time.perf_counter()
        load_synthetic(conn, seed, size - Chunk.objects.count(), rng, nprng)
        load_s = time.perf_counter() - started
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", [str(cores() - 1)])
        index_s = {}
        for name in INDEXES:
            started = time.perf_counter()
            conn.execute(definitions[name])
            index_s[name] = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE knowledge_chunk")
        conn.execute("VACUUM ANALYZE knowledge_document")
    return Build(load_s=load_s, index_s=index_s)


def hnsw_parameters() -> str:
    """The HNSW index's graph settings, as the model declares them."""
    index = next(i for i in Chunk._meta.indexes if i.name == "chunk_embedding_hnsw")
    return f"m={index.m}, ef_construction={index.ef_construction}"


def cores() -> int:
    return len(os.sched_getaffinity(0))
