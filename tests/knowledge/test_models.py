import pytest
from django.db import IntegrityError, connection

from console.knowledge.models import Chunk, Collection, Document


@pytest.mark.django_db
def test_migrations_create_vector_extension_and_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'knowledge_chunk'")
        indexes = dict(cursor.fetchall())
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["chunk_embedding_hnsw"]
    assert "WITH (m='32', ef_construction='128')" in indexes["chunk_embedding_hnsw"]
    assert "USING gin (search_vector)" in indexes["chunk_search_vector_gin"]


@pytest.mark.django_db
def test_document_source_is_unique_within_a_collection():
    collection = Collection.objects.create(name="A", slug="a")
    other = Collection.objects.create(name="B", slug="b")
    Document.objects.create(collection=collection, source="x.md")
    Document.objects.create(collection=other, source="x.md")
    with pytest.raises(IntegrityError):
        Document.objects.create(collection=collection, source="x.md")


@pytest.mark.django_db
def test_chunk_ordinal_is_unique_within_a_document():
    document = Document.objects.create(collection=Collection.objects.create(name="A", slug="a"), source="x")
    Chunk.objects.create(document=document, ordinal=0, text="a", embedding=[0.1] * 384)
    with pytest.raises(IntegrityError):
        Chunk.objects.create(document=document, ordinal=0, text="b", embedding=[0.1] * 384)


@pytest.mark.django_db
def test_progress_cannot_exceed_100_percent():
    collection = Collection.objects.create(name="A", slug="a")
    with pytest.raises(IntegrityError):
        Document.objects.create(collection=collection, source="x", progress=101)
