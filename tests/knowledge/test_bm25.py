"""BM25 ranking of the full-text leg, its statistics, the per-document cap, adjacent-chunk merging,
and filtered vector search that still finds k results."""

import math
import threading

import numpy as np
import pytest
from django.db import connection, connections

from console.knowledge.models import Chunk, ChunkTotals, Collection, Document, Lexeme
from console.knowledge.search import SearchResult, merge_adjacent, search

pytestmark = pytest.mark.django_db

K1, B = 1.2, 0.75


def _unit(rng, n, dims=384):
    vectors = rng.normal(size=(n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def store_vectors(collection):
    """Store chunks whose search vectors are given as tsvector literals ('word:1 other:2,3B')."""
    rng = np.random.default_rng(3)

    def store(vectors: list[str], *, source: str = "doc.md", into: Collection = collection) -> list[int]:
        document = Document.objects.create(collection=into, source=source, title=source, status="indexed")
        chunks = Chunk.objects.bulk_create(
            Chunk(document=document, ordinal=i, text=f"chunk {i}", embedding=v)
            for i, v in enumerate(_unit(rng, len(vectors)))
        )
        with connection.cursor() as cursor:
            for chunk, vector in zip(chunks, vectors, strict=True):
                cursor.execute(
                    "UPDATE knowledge_chunk SET search_vector = %s::tsvector WHERE id = %s",
                    [vector, chunk.pk],
                )
        return [chunk.pk for chunk in chunks]

    return store


def _bm25(query_words, chunk, corpus, weights=None):
    """The Okapi BM25 score of `chunk` ({word: [labels of its positions]}) in `corpus` (a list of such)."""
    weights = weights or {"A": 1.0, "B": 1.0, "C": 1.0, "D": 1.0}
    n = len(corpus)
    average = sum(sum(len(p) for p in c.values()) for c in corpus) / n
    length = sum(len(p) for p in chunk.values())
    score = 0.0
    for word in query_words:
        if word not in chunk:
            continue
        df = sum(1 for c in corpus if word in c)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        tf = sum(weights[label] for label in chunk[word])
        score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
    return score


@pytest.fixture
def bm25_settings(settings):
    settings.SEARCH_BM25_K1, settings.SEARCH_BM25_B = K1, B
    settings.SEARCH_TITLE_WEIGHT, settings.SEARCH_HEADING_WEIGHT = 3.0, 2.0
    return settings


def test_scores_are_okapi_bm25_rare_words_beat_common_ones_and_short_chunks_beat_long(
    store_vectors, bm25_settings
):
    corpus = [
        {"zebra": ["D"], "common": ["D"]},  # both words: best
        {"zebra": ["D"], "filler": ["D"]},  # the rare word only
        {"common": ["D"], "filler": ["D"]},  # the common word only
        {"common": ["D"], "filler": ["D", "D", "D", "D", "D", "D"]},  # the common word in a longer chunk
        {"common": ["D", "D"], "other": ["D"]},  # the common word twice
        {"filler": ["D"]},
    ]
    literals = []
    for chunk in corpus:
        position, parts = 1, []
        for word, labels in chunk.items():
            places = ",".join(
                f"{position + i}{'' if label == 'D' else label}" for i, label in enumerate(labels)
            )
            parts.append(f"{word}:{places}")
            position += len(labels)
        literals.append(" ".join(parts))
    ids = store_vectors(literals)

    results = search("zebra common", k=10, method="fulltext", per_document=0)
    scores = {r.chunk_id: r.score for r in results}
    expected = {ids[i]: _bm25(["zebra", "common"], chunk, corpus) for i, chunk in enumerate(corpus)}
    assert set(scores) == {ids[0], ids[1], ids[2], ids[3], ids[4]}
    for chunk_id, score in scores.items():
        assert score == pytest.approx(expected[chunk_id], rel=1e-5)
    order = [r.chunk_id for r in results]
    assert order[:2] == [ids[0], ids[1]]  # the rare word outweighs the common one
    assert order.index(ids[2]) < order.index(ids[3])  # same term frequency, shorter chunk first
    assert order.index(ids[4]) < order.index(ids[2])  # more occurrences, same length: higher


def test_title_and_heading_count_more_than_body_text(store_vectors, bm25_settings):
    corpus = [
        {"zebra": ["A"], "filler": ["D"]},
        {"zebra": ["B"], "filler": ["D"]},
        {"zebra": ["D"], "filler": ["D"]},
        {"filler": ["D"]},
    ]
    ids = store_vectors(["zebra:1A filler:2", "zebra:1B filler:2", "zebra:1 filler:2", "filler:1"])
    results = search("zebra", k=10, method="fulltext", per_document=0)
    assert [r.chunk_id for r in results] == ids[:3]
    weights = {"A": 3.0, "B": 2.0, "C": 1.0, "D": 1.0}
    for result, chunk in zip(results, corpus, strict=False):
        assert result.score == pytest.approx(_bm25(["zebra"], chunk, corpus, weights), rel=1e-5)


def _recount():
    """The statistics counted afresh from the chunks, to compare with what the triggers kept."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT word.lexeme, count(*) FROM knowledge_chunk CROSS JOIN unnest(search_vector) AS word"
            " GROUP BY word.lexeme"
        )
        lexemes = dict(cursor.fetchall())
        cursor.execute(
            "SELECT coalesce(sum(greatest(cardinality(word.positions), 1)), 0)"
            "  FROM knowledge_chunk c CROSS JOIN unnest(c.search_vector) AS word"
        )
        length = cursor.fetchone()[0]
    chunks = Chunk.objects.filter(search_vector__isnull=False).count()
    return lexemes, chunks, length


def _kept():
    totals = ChunkTotals.objects.filter(pk=1).first()
    return (
        dict(Lexeme.objects.values_list("lexeme", "chunks")),
        totals.chunks if totals else 0,
        totals.length if totals else 0,
    )


def test_statistics_follow_indexing_reindexing_and_deletion(collection, add_document):
    other = Collection.objects.create(name="Other", slug="other")
    first = add_document(collection, "zoo.md", "# Zoo\n\nThe zebra enclosure is cleaned quarterly.")
    add_document(collection, "farm.md", "# Farm\n\nCows and a zebra crossing by the barn.")
    add_document(other, "bank.md", "# Bank\n\nQuarterly numbers for the treasury.")
    kept = _kept()
    assert kept == _recount()
    assert kept[0]["zebra"] == 2 and kept[1] == 3

    add_document(collection, "zoo.md", "# Zoo\n\nLions only now; the enclosure moved.")  # re-indexed
    assert _kept() == _recount()
    assert _kept()[0]["zebra"] == 1 and "lion" in _kept()[0]

    Document.objects.get(pk=first.pk).delete()
    assert _kept() == _recount()
    assert "lion" not in _kept()[0]  # a lexeme no chunk holds is gone, not kept at zero

    other.delete()
    assert _kept() == _recount()
    assert "treasuri" not in _kept()[0] and _kept()[1] == 1


@pytest.mark.django_db(transaction=True)
def test_statistics_stay_exact_when_two_transactions_store_chunks_at_once(collection, store_vectors):
    """Two writers whose statements interleave: the second waits on the totals row, then adds to it."""
    rng = np.random.default_rng(5)
    documents = [
        Document.objects.create(collection=collection, source=f"{n}.md", status="indexed") for n in range(2)
    ]
    vectors = ["shared:1 alpha:2", "shared:1 beta:2,3"]
    first, second = (connection.get_new_connection(connection.get_connection_params()) for _ in range(2))
    try:
        insert = (
            "INSERT INTO knowledge_chunk (document_id, ordinal, heading, text, token_count, embedding,"
            " search_vector) VALUES (%s, 0, '', 'x', 1, %s::vector, %s::tsvector)"
        )
        first.execute(insert, [documents[0].pk, str(_unit(rng, 1)[0].tolist()), vectors[0]])
        done = threading.Event()

        def write_second() -> None:
            second.execute(insert, [documents[1].pk, str(_unit(rng, 1)[0].tolist()), vectors[1]])
            second.commit()
            done.set()

        writer = threading.Thread(target=write_second)
        writer.start()
        assert not done.wait(0.5)  # queued behind the first transaction's totals row
        first.commit()
        writer.join(10)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    connections["default"].close()
    assert _kept() == _recount()
    assert _kept()[0]["shared"] == 2 and _kept()[1] == 2


@pytest.mark.parametrize("method", ["hybrid", "vector", "fulltext"])
def test_at_most_n_chunks_of_one_document_and_others_fill_the_top_k(store_vectors, method, settings):
    settings.SEARCH_CHUNKS_PER_DOCUMENT = 2
    store_vectors([f"budget:1 note:{i + 2}" for i in range(8)], source="long.md")
    store_vectors(["budget:1 plan:2"], source="short-a.md")
    store_vectors(["budget:1 plan:2"], source="short-b.md")
    query_embedding = _unit(np.random.default_rng(9), 1)[0].tolist()
    capped = search("budget", k=4, method=method, query_embedding=query_embedding)
    sources = [r.source for r in capped]
    assert len(capped) == 4 and sources.count("long.md") == 2
    assert {"short-a.md", "short-b.md"} <= set(sources)
    uncapped = search("budget", k=10, method=method, query_embedding=query_embedding, per_document=0)
    assert [r.source for r in uncapped].count("long.md") == 8


def test_a_negative_cap_is_a_clear_error(store_vectors):
    with pytest.raises(ValueError, match="per_document must be 0"):
        search("budget", method="fulltext", per_document=-1)


def _result(chunk_id, ordinal, text, *, document_id=1, heading="Setup", tokens=100, score=1.0):
    return SearchResult(
        chunk_id=chunk_id,
        document_id=document_id,
        document="Guide",
        source="guide.md",
        document_version=1,
        heading=heading,
        text=text,
        score=score,
        similarity=score,
        ordinal=ordinal,
        token_count=tokens,
    )


def test_adjacent_chunks_merge_into_one_passage_without_repeating_their_overlap():
    overlap = "Run the installer as an administrator."
    results = [
        _result(11, 4, f"Open a terminal. {overlap}", score=0.9),
        _result(30, 0, "Another document entirely.", document_id=2, score=0.8),
        _result(10, 3, "Download the installer first.", score=0.7),
        _result(12, 5, f"{overlap} Then reboot.", score=0.6),
    ]
    merged = merge_adjacent(results, max_tokens=400)
    assert [m.chunk_ids for m in merged] == [(10, 11, 12), (30,)]
    passage = merged[0]
    assert passage.chunk_id == 11 and passage.score == 0.9  # the best-ranked chunk's place and score
    assert passage.ordinal == 3 and passage.token_count == 300
    assert passage.text == f"Download the installer first.\n\nOpen a terminal. {overlap} Then reboot."
    assert passage.text.count(overlap) == 1


def test_chunks_merge_only_when_adjacent_in_one_section_and_within_the_budget():
    results = [
        _result(1, 0, "First part of setup text."),
        _result(3, 2, "Not next to the first."),
        _result(4, 3, "A different section.", heading="Usage"),
        _result(5, 4, "Would overflow the budget.", heading="Usage", tokens=400),
    ]
    merged = merge_adjacent(results, max_tokens=450)
    assert [m.chunk_ids for m in merged] == [(1,), (3,), (4,), (5,)]
    assert merge_adjacent(results[:1], max_tokens=450)[0].text == "First part of setup text."


@pytest.fixture
def one_percent_readable():
    """5,000 chunks: 4,950 restricted ones around the query vector, a readable 1 % far from it."""
    rng = np.random.default_rng(11)
    query = _unit(rng, 1)[0]
    secret = Collection.objects.create(name="Secret", slug="secret", allowed_scopes=["slack:CA"])
    public = Collection.objects.create(name="Public", slug="public")
    for collection, documents, near in [(secret, 99, True), (public, 1, False)]:
        for n in range(documents):
            document = Document.objects.create(
                collection=collection, source=f"{collection.slug}-{n}.md", status="indexed", chunk_count=50
            )
            vectors = _unit(rng, 50)
            if near:
                vectors = query + 0.05 * vectors
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            Chunk.objects.bulk_create(
                Chunk(document=document, ordinal=i, text=f"note {i}", embedding=v)
                for i, v in enumerate(vectors)
            )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE knowledge_chunk SET search_vector = to_tsvector('english', text)")
        cursor.execute("ANALYZE knowledge_chunk")
    return query.tolist()


# Committed then truncated (transaction=True), not rolled back: 5,000 rolled-back vectors would
# stay in the HNSW graph as dead entries that slow every later vector search of the test session.
@pytest.mark.django_db(transaction=True)
def test_a_channel_reading_one_percent_of_the_chunks_still_gets_k(one_percent_readable):
    """Both vector legs (alone and in hybrid) on one corpus: building it is the slow part."""
    for method in ("vector", "hybrid"):
        with connection.cursor() as cursor:
            cursor.execute("SET hnsw.max_scan_tuples = 1000")  # what 20,000 is to a corpus 20 times larger
        try:
            results = search(
                "note",
                k=10,
                scopes=["slack:CB"],
                method=method,
                query_embedding=one_percent_readable,
                per_document=0,
            )
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET hnsw.max_scan_tuples")
        assert len(results) == 10, method
        assert {r.source for r in results} == {"public-0.md"}, method
