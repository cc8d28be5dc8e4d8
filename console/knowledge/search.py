"""Hybrid retrieval: pgvector cosine kNN and BM25-ranked PostgreSQL full text, fused by reciprocal rank.

Collection access is part of the SQL WHERE of both legs, so a restricted chunk can never
reach a channel, and filtering never starves results: HNSW iterative scans keep going until
k allowed rows are found, and when a channel may read only a sliver of the chunks the vector
leg scans that sliver exactly instead (`_vector_scan`). At most SEARCH_CHUNKS_PER_DOCUMENT
chunks of one document are returned, so one long document cannot crowd out the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from pgvector import Vector
from pgvector.psycopg import register_vector

from ml import embeddings

METHODS = ("hybrid", "vector", "fulltext")
# websearch_to_tsquery syntax a person typed on purpose: "a phrase", -excluded, or.
_OPERATORS = re.compile(r'"|(?:^|\s)-\w|\bor\b', re.IGNORECASE)

# When a channel may read less than this share of all chunks, HNSW would walk past many
# unreadable neighbours (pgvector stops at hnsw.max_scan_tuples, 20,000 by default, and then
# returns fewer than k): such a slice is scanned exactly when small enough, and otherwise
# HNSW may scan as many tuples as the slice needs to hold the candidates.
SELECTIVE_SHARE = 0.1
EXACT_SCAN_CHUNKS = 20_000  # exact distances to this many chunks take ~10-20 ms
_DEFAULT_MAX_SCAN_TUPLES = 20_000
MIN_OVERLAP_CHARS = 16  # shorter shared text between adjacent chunks is not chunking's overlap


def any_word(query: str) -> bool:
    """Whether full text should match chunks with any of the query's words, not only all of them.

    websearch_to_tsquery ANDs every word, so a question in plain words ("how long does the
    canary run") rarely has all of them in one chunk. So a chunk matches when it holds all the
    words, or any word that is not common (SEARCH_COMMON_WORD_CHUNKS); BM25 then orders them.
    Quotes, -exclusions and OR keep websearch's meaning.
    """
    return not _OPERATORS.search(query)


@dataclass(frozen=True)
class SearchResult:
    chunk_id: int
    document_id: int
    document: str  # title
    source: str  # where a person reads it: the document's URL when a source gave one, else its file name
    document_version: int
    heading: str
    text: str
    score: float  # fused score (hybrid) or the leg's own score (cosine similarity, BM25)
    similarity: float | None  # cosine similarity to the query, when known
    ordinal: int = 0  # the chunk's place in its document
    token_count: int = 0
    chunk_ids: tuple[int, ...] = ()  # every chunk this result holds, when merge_adjacent joined several


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
    per_document: int | None = None,
) -> list[SearchResult]:
    """Top-k chunks for `query`, at most `per_document` of one document
    (None: SEARCH_CHUNKS_PER_DOCUMENT; 0: no cap).

    collections: slugs to search (None: all). scopes: the asking channel's scopes such as
    `slack:C123`, `slack:T9`, `discord:42`; a collection with allowed scopes is searched only
    when one of them matches. None means a trusted operator (CLI, admin): no scope filter.
    candidates: how many chunks each leg contributes before fusion and the cap.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown search method {method!r}; use one of {', '.join(METHODS)}.")
    cap = settings.SEARCH_CHUNKS_PER_DOCUMENT if per_document is None else per_document
    if cap < 0:
        raise ValueError(f"per_document must be 0 (no cap) or more, got {cap}.")
    query = query.strip()
    if not query or k <= 0:
        return []
    # With a cap, each leg brings more candidates, so other documents can fill the top-k.
    pool = max(candidates or k * (8 if cap else 4), k)
    params: dict[str, Any] = {  # Vector is adapted by pgvector.psycopg, beyond what the stubs list
        "query": query,
        "pool": pool,
        "k": k,
        "collections": list(collections) if collections is not None else None,
        "scopes": list(scopes) if scopes is not None else None,
        "rrf": settings.SEARCH_RRF_K,
        "text_weight": settings.SEARCH_TEXT_WEIGHT if text_weight is None else text_weight,
        "per_document": cap or None,
        **bm25_parameters(query),
    }
    if method != "fulltext":
        vector = query_embedding if query_embedding is not None else embed_query(query)
        params["embedding"] = Vector([float(x) for x in vector])
    with transaction.atomic():
        _register_vector_types()
        with connection.cursor() as cursor:
            if method != "fulltext":
                _vector_scan(cursor, params)
            cursor.execute(SQL[method], params)
            rows = cursor.fetchall()
    return [SearchResult(*row) for row in rows]


def bm25_parameters(query: str) -> dict[str, Any]:
    """The full-text leg's parameters: BM25's k1 and b, and the field weights as ts_rank_cd takes them.

    ts_rank_cd with a one-word query and no normalisation is the sum, over the word's positions,
    of the weight of each position's label ({D, C, B, A}; each at most 1): the weighted term
    frequency, read straight from the tsvector. The labels' multipliers are scaled to fit under 1
    and `tf_scale` scales the sum back.
    """
    multipliers = [1.0, 1.0, settings.SEARCH_HEADING_WEIGHT, settings.SEARCH_TITLE_WEIGHT]
    scale = max(multipliers)
    return {
        "any_word": any_word(query),
        "common": settings.SEARCH_COMMON_WORD_CHUNKS,
        "k1": settings.SEARCH_BM25_K1,
        "b": settings.SEARCH_BM25_B,
        "weights": [m / scale for m in multipliers],
        "tf_scale": scale,
    }


def _register_vector_types() -> None:
    """pgvector's psycopg adapters on this database connection, once per connection, so a
    query vector is sent as a `vector` rather than formatted into the SQL as text."""
    connection.ensure_connection()
    if connection.connection.adapters.types.get("vector") is None:
        register_vector(connection.connection)


def _vector_scan(cursor: CursorWrapper, params: dict[str, Any]) -> None:
    """Settings for the vector leg, local to this transaction.

    HNSW keeps scanning (relaxed_order iterative scans) until `pool` allowed rows are found,
    but only up to hnsw.max_scan_tuples. A filter that leaves few readable chunks would stop it
    short, so then the readable chunks are scanned exactly (no index scan: their distances are
    computed one by one), or, for a slice too large for that, the scan limit is raised to what
    the slice needs.
    """
    cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    cursor.execute(
        "SELECT set_config('hnsw.ef_search', %s, true)", [str(max(settings.SEARCH_EF, params["pool"]))]
    )
    if params["collections"] is None and params["scopes"] is None:
        return
    cursor.execute(READABLE_CHUNKS, params)
    readable, total = cursor.fetchone() or (0, 0)
    if readable >= total * SELECTIVE_SHARE:
        return
    if readable <= EXACT_SCAN_CHUNKS:
        cursor.execute("SET LOCAL enable_indexscan = off")
        return
    needed = math.ceil(max(settings.SEARCH_EF, params["pool"]) * total / max(readable, 1))
    cursor.execute(
        "SELECT set_config('hnsw.max_scan_tuples', %s, true)", [str(max(needed, _DEFAULT_MAX_SCAN_TUPLES))]
    )


# Who may read a chunk, in the WHERE of every leg (so top-k is taken among allowed chunks only):
# the collections asked for (NULL: all), and of those the ones open to everyone or to one of
# the asking channel's scopes (NULL: a trusted operator).
_ALLOWED = """(%(collections)s::text[] IS NULL OR col.slug = ANY(%(collections)s::text[]))
       AND (%(scopes)s::text[] IS NULL
            OR cardinality(col.allowed_scopes) = 0
            OR col.allowed_scopes && %(scopes)s::varchar[])"""

# How many chunks the asker may read, of how many in all (from the documents' chunk counts and
# the BM25 totals, both kept as chunks are stored): the selectivity of the access filter.
READABLE_CHUNKS = f"""
SELECT (SELECT coalesce(sum(d.chunk_count), 0)
          FROM knowledge_document d
          JOIN knowledge_collection col ON col.id = d.collection_id
         WHERE {_ALLOWED}) AS readable,
       (SELECT coalesce(max(chunks), 0) FROM knowledge_chunk_totals) AS total
"""

# The query vector, written into the SQL once per use: a FROM-less subquery that PostgreSQL
# folds into a constant, so the HNSW index still serves `ORDER BY c.embedding <=> q.embedding`.
_QUERY_VECTOR = "(SELECT %(embedding)s AS embedding)"

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

# Okapi BM25 over the chunks' tsvectors, the GIN index selecting the candidates:
#   score = sum over the query's words of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))
#   idf = ln(1 + (N - n + 0.5) / (n + 0.5)), n: chunks holding the word (knowledge_lexeme),
#   N and average: chunks and mean length (knowledge_chunk_totals, both kept by triggers),
#   tf: weighted occurrences in the chunk (title and heading count more; bm25_parameters),
#   length: lexeme positions in the chunk, which ts_rank_cd's length normalisation (2) divides by.
# Candidates hold all the words, or (a plain question) any word in at most `common` chunks; a
# common word still adds to the score of chunks another word selected, as Lucene's
# common-terms query does, so no query ranks every chunk holding "use".
_MATCHING = f"""WITH corpus AS (
                SELECT coalesce(max(chunks), 0) AS chunks,
                       coalesce(max(length)::float / nullif(max(chunks), 0), 1) AS average_length
                  FROM knowledge_chunk_totals
            ),
            terms AS (
                SELECT l.lexeme, l.chunks, quote_literal(l.lexeme)::tsquery AS word,
                       ln(1 + (corpus.chunks - l.chunks + 0.5) / (l.chunks + 0.5)) AS idf
                  FROM knowledge_lexeme l
                 CROSS JOIN corpus
                 WHERE l.lexeme = ANY(tsvector_to_array(to_tsvector('english', %(query)s)))
            ),
            text_query AS (
                SELECT CASE WHEN %(any_word)s
                            THEN all_words || COALESCE((SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery
                                                          FROM terms WHERE chunks <= %(common)s), ''::tsquery)
                            ELSE all_words END AS matching
                  FROM websearch_to_tsquery('english', %(query)s) AS all_words
            ),
            candidates AS MATERIALIZED (
                -- || '' reads each tsvector once (de-TOASTed) for the many ts_rank_cd calls below
                SELECT c.id, c.search_vector || ''::tsvector AS vector
                  FROM knowledge_chunk c
                  JOIN knowledge_document d ON d.id = c.document_id
                  JOIN knowledge_collection col ON col.id = d.collection_id
                 CROSS JOIN text_query q
                 WHERE c.search_vector @@ q.matching
                   AND {_ALLOWED}
            ),
            frequencies AS (
                SELECT candidates.id, terms.idf,
                       ts_rank_cd(%(weights)s::float4[], candidates.vector, terms.word, 0) AS weighted,
                       ts_rank_cd(%(weights)s::float4[], candidates.vector, terms.word, 2) AS per_position
                  FROM candidates
                 CROSS JOIN terms
                 WHERE candidates.vector @@ terms.word
            )
            SELECT f.id,
                   sum(f.idf * f.weighted * %(tf_scale)s * (%(k1)s + 1)
                       / (f.weighted * %(tf_scale)s
                          + %(k1)s * (1 - %(b)s + %(b)s * round(f.weighted / f.per_position) / corpus.average_length))
                   ) AS score
              FROM frequencies f
             CROSS JOIN corpus
             GROUP BY f.id
             ORDER BY score DESC, f.id
             LIMIT %(pool)s"""


def _results(scored: str, similarity: str = "NULL::float") -> str:
    """The result rows from `scored` (id, score; best first): at most `per_document` chunks of one
    document (NULL: no cap), numbered within their document after fusion, then the top k.

    Each leg is a MATERIALIZED CTE so it runs exactly once: inlined, the planner may put an
    HNSW scan on the inner side of a nested loop and rescan it per outer row."""
    return f"""
WITH {scored},
capped AS (
    SELECT scored.id, scored.score,
           row_number() OVER (PARTITION BY c.document_id ORDER BY scored.score DESC, scored.id) AS in_document
      FROM scored
      JOIN knowledge_chunk c ON c.id = scored.id
)
SELECT c.id, d.id, d.title, COALESCE(NULLIF(d.url, ''), d.source), d.version, c.heading, c.text,
       capped.score::float AS score, {similarity} AS similarity, c.ordinal, c.token_count
  FROM capped
  JOIN knowledge_chunk c ON c.id = capped.id
  JOIN knowledge_document d ON d.id = c.document_id
 {f"CROSS JOIN {_QUERY_VECTOR} AS q" if "q." in similarity else ""}
 WHERE %(per_document)s::int IS NULL OR capped.in_document <= %(per_document)s::int
 ORDER BY capped.score DESC, c.id
 LIMIT %(k)s
"""


SQL = {
    "vector": _results(
        f"scored AS MATERIALIZED (SELECT id, 1 - distance AS score FROM ({_NEAREST}) AS nearest)",
        "1 - (c.embedding <=> q.embedding)",
    ),
    "fulltext": _results(f"scored AS MATERIALIZED ({_MATCHING})"),
    # Both legs, each numbered by its own order, fused by reciprocal rank:
    # 1 / (rrf + rank) for the vector leg plus text_weight / (rrf + rank) for the text leg.
    "hybrid": _results(
        f"""semantic_search AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY distance) AS rank
      FROM ({_NEAREST}) AS nearest
),
keyword_search AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
      FROM ({_MATCHING}) AS best
),
scored AS (
    SELECT COALESCE(semantic_search.id, keyword_search.id) AS id,
           COALESCE(1.0 / (%(rrf)s + semantic_search.rank), 0)
           + COALESCE(%(text_weight)s / (%(rrf)s + keyword_search.rank), 0) AS score
      FROM semantic_search
      FULL OUTER JOIN keyword_search ON keyword_search.id = semantic_search.id
)""",
        "1 - (c.embedding <=> q.embedding)",
    ),
}


def merge_adjacent(results: Sequence[SearchResult], max_tokens: int) -> list[SearchResult]:
    """Join results of one document and section with consecutive ordinals into one passage
    while their tokens fit `max_tokens`, so the model reads fewer, longer, distinct sources.

    A merged passage takes the place of its best-ranked chunk, with its score and similarity;
    the text shared by consecutive chunks (chunking's overlap) appears once; `chunk_ids` lists
    every chunk it holds. Results that do not join keep their order.
    """
    merged: list[SearchResult] = []
    for result in results:
        for i, passage in enumerate(merged):
            joined = _join_passages(passage, result, max_tokens)
            if joined is not None:
                merged[i] = joined
                break
        else:
            merged.append(replace(result, chunk_ids=result.chunk_ids or (result.chunk_id,)))
    return merged


def _join_passages(passage: SearchResult, result: SearchResult, max_tokens: int) -> SearchResult | None:
    """`passage` extended by `result` when it lies right before or after it, or None."""
    if passage.document_id != result.document_id or passage.heading != result.heading:
        return None
    if passage.token_count + result.token_count > max_tokens:
        return None
    last = passage.ordinal + len(passage.chunk_ids) - 1
    if result.ordinal == last + 1:
        first, second = passage, result
    elif result.ordinal == passage.ordinal - 1:
        first, second = result, passage
    else:
        return None
    return replace(
        passage,
        ordinal=first.ordinal,
        text=_without_overlap(first.text, second.text),
        token_count=passage.token_count + result.token_count,
        chunk_ids=(*(first.chunk_ids or (first.chunk_id,)), *(second.chunk_ids or (second.chunk_id,))),
    )


def _without_overlap(first: str, second: str) -> str:
    """`first` then `second`, the longest end of `first` that `second` starts with written once
    (at least MIN_OVERLAP_CHARS, so a chance match of a letter or two is not taken for overlap)."""
    for start in range(len(first) - MIN_OVERLAP_CHARS + 1):
        if second.startswith(first[start:]):
            return first[:start] + second
    return f"{first}\n\n{second}"
