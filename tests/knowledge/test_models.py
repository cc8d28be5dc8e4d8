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


@pytest.mark.django_db
def test_indexed_bumps_the_version_and_clears_the_error():
    collection = Collection.objects.create(name="A", slug="a")
    document = Document.objects.create(
        collection=collection, source="x.md", status="indexing", error="old", progress=40, version=2
    )
    document.indexed(title="Handbook", chunk_count=7)
    stored = Document.objects.get(pk=document.pk)
    assert (stored.status, stored.title, stored.version, stored.chunk_count) == ("indexed", "Handbook", 3, 7)
    assert stored.error == "" and stored.progress == 100 and stored.indexed_at


@pytest.mark.django_db
def test_fail_records_the_reason_and_keeps_the_indexed_version():
    collection = Collection.objects.create(name="A", slug="a")
    document = Document.objects.create(collection=collection, source="x.md", status="indexing", progress=60)
    document.indexed(title="x", chunk_count=1)
    document.fail("Unsupported file type .pages: upload .txt, .md, .html, .pdf or .docx")
    stored = Document.objects.get(pk=document.pk)
    assert stored.status == "failed" and stored.error.startswith("Unsupported file type")
    assert stored.progress == 0 and stored.version == 1 and stored.chunk_count == 1
    assert document.status == "failed"
