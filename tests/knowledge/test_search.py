import numpy as np
import pytest
from django.db import connection
from pgvector import Vector

from console.knowledge.models import Chunk, Collection, Document
from console.knowledge.search import search
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD, VPN_TXT

pytestmark = pytest.mark.django_db


@pytest.fixture
def handbook(collection, add_document):
    for source, text in [("oncall.md", ONCALL_MD), ("expenses.md", EXPENSES_MD), ("vpn.txt", VPN_TXT)]:
        assert add_document(collection, source, text).status == Document.Status.INDEXED
    return collection


@pytest.mark.parametrize("method", ["hybrid", "vector", "fulltext"])
def test_each_method_finds_the_answering_document(handbook, method):
    results = search("how much can I spend on a monitor", k=3, method=method)
    assert results, method
    top = results[0]
    assert top.source == "expenses.md"
    assert top.document == "Expense policy"
    assert "400 euros" in top.text
    assert top.document_version == 1


def test_hybrid_results_carry_scores_in_order(handbook):
    results = search("who gets paged when on-call does not acknowledge", k=5)
    assert results[0].source == "oncall.md"
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r.similarity is not None and -1 <= r.similarity <= 1 for r in results)


def test_exact_terms_are_found_by_full_text(handbook):
    results = search("WireGuard northwind-office", k=2, method="fulltext")
    assert [r.source for r in results][:1] == ["vpn.txt"]


def test_a_plain_question_finds_chunks_without_all_of_its_words(handbook):
    # No chunk holds every one of these words; websearch_to_tsquery alone would AND them.
    results = search("can my WireGuard tunnel expense a monitor", k=5, method="fulltext", per_document=0)
    assert {r.source for r in results} >= {"vpn.txt", "expenses.md"}
    both = search("WireGuard northwind-office", k=5, method="fulltext")
    assert both[0].source == "vpn.txt"


def test_a_word_common_across_the_chunks_does_not_match_on_its_own(collection, add_document, settings):
    for n in range(5):
        add_document(collection, f"report-{n}.md", f"# Report {n}\n\nThe quarterly numbers for team {n}.")
    add_document(collection, "zoo.md", "# Zoo\n\nThe zebra enclosure is cleaned quarterly.")
    question = "quarterly zebra feeding"
    assert len(search(question, k=10, method="fulltext")) == 6  # "quarter" is in 6 chunks: not common yet

    settings.SEARCH_COMMON_WORD_CHUNKS = 3
    results = search(question, k=10, method="fulltext")
    assert [r.source for r in results] == ["zoo.md"]  # "quarterly" alone no longer makes a match
    # ...but a chunk holding every word still matches, and the common word still ranks it.
    assert [r.source for r in search("quarterly numbers", k=10, method="fulltext")][:1] == ["report-0.md"]


@pytest.mark.parametrize(
    ("query", "sources"),
    [
        ('"monitor" -WireGuard', {"expenses.md"}),  # quotes and exclusion keep their meaning
        ("WireGuard or PagerDuty", {"vpn.txt", "oncall.md"}),
        ('"WireGuard monitor"', set()),  # a phrase no document holds
    ],
)
def test_websearch_syntax_is_kept_when_a_person_uses_it(handbook, query, sources):
    assert {r.source for r in search(query, k=5, method="fulltext")} == sources


def test_collection_filter(handbook, add_document):
    other = Collection.objects.create(name="Other", slug="other")
    add_document(other, "monitors.md", "# Monitors\n\nMonitor budget for the design team is 900 euros.")
    results = search("monitor budget", k=5, collections=["other"])
    assert {r.source for r in results} == {"monitors.md"}


def test_empty_query_returns_nothing(handbook):
    assert search("   ", k=5) == []


def test_unknown_method_is_a_clear_error(handbook):
    with pytest.raises(ValueError, match="Unknown search method"):
        search("x", method="bm25")


def _random_unit(rng, n, dims=384):
    vectors = rng.normal(size=(n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def restricted_near_public_far():
    """1,000 restricted chunks right next to the query vector, 20 public ones far from it."""
    rng = np.random.default_rng(7)
    query = _random_unit(rng, 1)[0]
    secret = Collection.objects.create(name="Secret", slug="secret", allowed_scopes=["slack:CA"])
    public = Collection.objects.create(name="Public", slug="public")
    for collection, n, near in [(secret, 1000, True), (public, 20, False)]:
        document = Document.objects.create(
            collection=collection, source=f"{collection.slug}.md", title=collection.name, status="indexed"
        )
        vectors = _random_unit(rng, n)
        if near:
            vectors = query + 0.05 * vectors
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Chunk.objects.bulk_create(
            Chunk(document=document, ordinal=i, text=f"{collection.slug} budget note {i}", embedding=v)
            for i, v in enumerate(vectors)
        )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE knowledge_chunk SET search_vector = to_tsvector('english', text)")
    return query.tolist()


@pytest.mark.parametrize("method", ["vector", "hybrid", "fulltext"])
def test_restricted_chunks_never_reach_another_channel_and_it_still_gets_k(
    restricted_near_public_far, method
):
    results = search(
        "budget note",
        k=5,
        scopes=["slack:CB"],
        method=method,
        query_embedding=restricted_near_public_far,
        per_document=0,  # each collection here is one document
    )
    assert len(results) == 5
    assert {r.source for r in results} == {"public.md"}


def test_the_allowed_channel_sees_the_restricted_collection(restricted_near_public_far):
    results = search(
        "budget note",
        k=5,
        scopes=["slack:CA"],
        method="vector",
        query_embedding=restricted_near_public_far,
        per_document=0,
    )
    assert {r.source for r in results} == {"secret.md"}


def test_operator_search_without_scopes_sees_everything(restricted_near_public_far):
    results = search("budget note", k=1100, method="fulltext", per_document=0)
    assert {r.source for r in results} == {"secret.md", "public.md"}


@pytest.mark.parametrize("method", ["vector", "hybrid"])
def test_a_chunk_identical_to_the_query_vector_has_similarity_one(restricted_near_public_far, method):
    document = Document.objects.get(source="public.md")
    chunk = Chunk.objects.create(
        document=document, ordinal=99, text="budget note exact", embedding=restricted_near_public_far
    )
    results = search("budget note", k=5, method=method, query_embedding=restricted_near_public_far)
    assert [r.similarity for r in results if r.chunk_id == chunk.id] == [1.0]
    assert all(r.similarity < 1.0 for r in results if r.chunk_id != chunk.id)


def test_the_query_vector_is_sent_as_a_pgvector_value(handbook):
    sent = []

    def record(execute, sql, params, many, context):
        if "semantic_search" in sql:
            sent.append(params)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert search("how much can I spend on a monitor", k=3, method="hybrid")
    assert [type(params["embedding"]) for params in sent] == [Vector]
