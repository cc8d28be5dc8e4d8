"""Hybrid retrieval: pgvector cosine kNN and PostgreSQL full text, fused by reciprocal rank.

Collection access is part of the SQL WHERE of both legs, so a restricted chunk can never
reach a channel, and filtering never starves results (HNSW iterative scans keep going until
k allowed rows are found).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from pgvector import Vector
from pgvector.psycopg import register_vector

from ml import embeddings

METHODS = ("hybrid", "vector", "fulltext")
RRF_K = 60  # the usual reciprocal-rank-fusion constant: 1 / (60 + rank)
# websearch_to_tsquery syntax a person typed on purpose: "a phrase", -excluded, or.
_OPERATORS = re.compile(r'"|(?:^|\s)-\w|\bor\b', re.IGNORECASE)


# A word found in more chunks than this does not on its own make a chunk a full-text match:
# ranking every chunk that holds a common word would cost a scan of the table.
COMMON_WORD_CHUNKS = 1000
_COMMON_WORDS_TTL = 300.0  # seconds; the statistics change only when ANALYZE runs
_common_words: dict[str, tuple[float, list[str]]] = {}
_common_words_lock = threading.Lock()


def any_word(query: str) -> bool:
    """Whether full text should match chunks with any of the query's words, not only all of them.

    websearch_to_tsquery ANDs every word, so a question in plain words ("how long does the
    canary run") rarely has all of them in one chunk. So a chunk matches when it holds all the
    words, or any word that is not common (common_words): those holding every word rank first,
    then the others by ts_rank. Quotes, -exclusions and OR keep websearch's meaning.
    """
    return not _OPERATORS.search(query)


def common_words() -> list[str]:
    """Lexemes in more than COMMON_WORD_CHUNKS chunks, from PostgreSQL's own column statistics
    (pg_stats, kept by ANALYZE/autovacuum); cached a few minutes per process and database."""
    key = connection.settings_dict["NAME"]
    now = time.monotonic()
    with _common_words_lock:
        cached = _common_words.get(key)
        if cached and now - cached[0] < _COMMON_WORDS_TTL:
            return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples
              FROM pg_stats s JOIN pg_class c ON c.oid = 'knowledge_chunk'::regclass
             WHERE s.schemaname = current_schema() AND s.tablename = 'knowledge_chunk'
               AND s.attname = 'search_vector'
            """
        )
        row = cursor.fetchone()
    words: list[str] = []
    if row and row[0]:
        lexemes, shares, rows = row
        # The share of chunks holding each lexeme (the last three entries are summary figures).
        words = [w for w, share in zip(lexemes, shares, strict=False) if share * rows > COMMON_WORD_CHUNKS]
    with _common_words_lock:
        _common_words[key] = (now, words)
    return words


def forget_common_words() -> None:
    with _common_words_lock:
        _common_words.clear()


@dataclass(frozen=True)
class SearchResult:
    chunk_id: int
    document_id: int
    document: str  # title
    source: str
    document_version: int
    heading: str
    text: str
    score: float  # fused score (hybrid) or the leg's own score
    similarity: float | None  # cosine similarity to the query, when known


def embed_query(query: str) -> list[float]:
    return embeddings.embed(settings.EMBEDDING_MODEL, [query])[0].tolist()


def search(
    query: str,
    *,
    k: int = 5,
    collections: Sequence[str] | None = None,
    scopes: Sequence[str] | None = None,
    method: str = "hybrid",
    query_embedding: Sequence[float] | None = None,
    candidates: int | None = None,
    text_weight: float | None = None,
) -> list[SearchResult]:
    """Top-k chunks for `query`.

    collections: slugs to search (None: all). scopes: the asking channel's scopes such as
    `slack:C123`, `slack:T9`, `discord:42`; a collection with allowed scopes is searched only
    when one of them matches. None means a trusted operator (CLI, admin): no scope filter.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown search method {method!r}; use one of {', '.join(METHODS)}.")
    query = query.strip()
    if not query or k <= 0:
        return []
    pool = max(candidates or k * 4, k)
    params: dict[str, Any] = {  # Vector is adapted by pgvector.psycopg, beyond what the stubs list
        "query": query,
        "pool": pool,
        "k": k,
        "collections": list(collections) if collections is not None else None,
        "scopes": list(scopes) if scopes is not None else None,
        "rrf": RRF_K,
        "text_weight": settings.SEARCH_TEXT_WEIGHT if text_weight is None else text_weight,
        "any_word": any_word(query),
        "common": common_words() if method != "vector" else [],
    }
    if method != "fulltext":
        vector = query_embedding if query_embedding is not None else embed_query(query)
        params["embedding"] = Vector([float(x) for x in vector])
    with transaction.atomic():
        _register_vector_types()
        with connection.cursor() as cursor:
            if method != "fulltext":
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                cursor.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true)", [str(max(settings.SEARCH_EF, pool))]
                )
            cursor.execute(SQL[method], params)
            rows = cursor.fetchall()
    return [SearchResult(*row) for row in rows]


def _register_vector_types() -> None:
    """pgvector's psycopg adapters on this database connection, once per connection, so a
    query vector is sent as a `vector` rather than formatted into the SQL as text."""
    connection.ensure_connection()
    if connection.connection.adapters.types.get("vector") is None:
        register_vector(connection.connection)


# Who may read a chunk, in the WHERE of every leg (so top-k is taken among allowed chunks only):
# the collections asked for (NULL: all), and of those the ones open to everyone or to one of
# the asking channel's scopes (NULL: a trusted operator).
_ALLOWED = """(%(collections)s::text[] IS NULL OR col.slug = ANY(%(collections)s::text[]))
       AND (%(scopes)s::text[] IS NULL
            OR cardinality(col.allowed_scopes) = 0
            OR col.allowed_scopes && %(scopes)s::varchar[])"""

# The query vector, written into the SQL once per use: a FROM-less subquery that PostgreSQL
# folds into a constant, so the HNSW index still serves `ORDER BY c.embedding <=> q.embedding`.
_QUERY_VECTOR = "(SELECT %(embedding)s AS embedding)"

# The full-text query: the question in websearch syntax (all words), OR'ed, for a plain
# question (any_word), with each of its words that is not common (common_words). An empty
# OR leaves the websearch query as it is.
_TEXT_QUERY = """(
        SELECT websearch_to_tsquery('english', %(query)s) AS all_words,
               websearch_to_tsquery('english', %(query)s) || COALESCE((
                   SELECT string_agg(quote_literal(word), ' | ')::tsquery
                     FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS word
                    WHERE %(any_word)s AND word <> ALL(%(common)s::text[])
               ), ''::tsquery) AS some_words
     )"""

# The two legs, each the best `pool` chunks among those allowed: written once, used alone by
# vector and full text and side by side by hybrid.
# Nearest by cosine distance (HNSW); relaxed_order iterative scans may return them slightly out
# of order, so every user sorts again.
_NEAREST = f"""SELECT c.id, c.embedding <=> q.embedding AS distance
              FROM knowledge_chunk c
              JOIN knowledge_document d ON d.id = c.document_id
              JOIN knowledge_collection col ON col.id = d.collection_id
             CROSS JOIN {_QUERY_VECTOR} AS q
             WHERE {_ALLOWED}
             ORDER BY c.embedding <=> q.embedding
             LIMIT %(pool)s"""

# Chunks holding every word rank first (score >= 1), then the rest by ts_rank (GIN).
_MATCHING = f"""SELECT c.id,
                   (c.search_vector @@ q.all_words)::int + ts_rank(c.search_vector, q.some_words, 32) AS score
              FROM knowledge_chunk c
              JOIN knowledge_document d ON d.id = c.document_id
              JOIN knowledge_collection col ON col.id = d.collection_id
             CROSS JOIN {_TEXT_QUERY} AS q
             WHERE c.search_vector @@ q.some_words
               AND {_ALLOWED}
             ORDER BY score DESC, c.id
             LIMIT %(pool)s"""

SQL = {
    "vector": f"""
WITH semantic_search AS ({_NEAREST})
SELECT c.id, d.id, d.title, d.source, d.version, c.heading, c.text,
       1 - semantic_search.distance AS score, 1 - semantic_search.distance AS similarity
  FROM semantic_search
  JOIN knowledge_chunk c ON c.id = semantic_search.id
  JOIN knowledge_document d ON d.id = c.document_id
 ORDER BY semantic_search.distance
 LIMIT %(k)s
""",
    "fulltext": f"""
WITH keyword_search AS ({_MATCHING})
SELECT c.id, d.id, d.title, d.source, d.version, c.heading, c.text,
       keyword_search.score, NULL::float AS similarity
  FROM keyword_search
  JOIN knowledge_chunk c ON c.id = keyword_search.id
  JOIN knowledge_document d ON d.id = c.document_id
 ORDER BY keyword_search.score DESC, c.id
 LIMIT %(k)s
""",
    # Both legs, each numbered by its own order, fused by reciprocal rank:
    # 1 / (rrf + rank) for the vector leg plus text_weight / (rrf + rank) for the text leg.
    "hybrid": f"""
WITH semantic_search AS (
    SELECT id, row_number() OVER (ORDER BY distance) AS rank
      FROM ({_NEAREST}) AS nearest
),
keyword_search AS (
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
      FROM ({_MATCHING}) AS best
),
fused AS (
    SELECT COALESCE(semantic_search.id, keyword_search.id) AS id,
           COALESCE(1.0 / (%(rrf)s + semantic_search.rank), 0)
           + COALESCE(%(text_weight)s / (%(rrf)s + keyword_search.rank), 0) AS score
      FROM semantic_search
      FULL OUTER JOIN keyword_search ON keyword_search.id = semantic_search.id
)
SELECT c.id, d.id, d.title, d.source, d.version, c.heading, c.text,
       fused.score::float AS score, 1 - (c.embedding <=> q.embedding) AS similarity
  FROM fused
  JOIN knowledge_chunk c ON c.id = fused.id
  JOIN knowledge_document d ON d.id = c.document_id
 CROSS JOIN {_QUERY_VECTOR} AS q
 ORDER BY fused.score DESC, c.id
 LIMIT %(k)s
""",
}
