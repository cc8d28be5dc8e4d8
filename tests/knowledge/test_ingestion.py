import io

import numpy as np
import pytest
from docx import Document as DocxDocument

from console.knowledge import indexing
from console.knowledge.models import Chunk, Document
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD, VPN_TXT

pytestmark = pytest.mark.django_db


def _docx_bytes() -> bytes:
    doc = DocxDocument()
    doc.add_heading("Release versioning", level=1)
    doc.add_paragraph("Releases follow semantic versioning; the release train leaves every second Thursday.")
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()


def test_markdown_document_is_indexed_with_heading_aware_chunks(collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    assert document.status == Document.Status.INDEXED, document.error
    assert document.version == 1
    assert document.title == "On-call rotation"
    assert document.progress == 100
    chunks = list(document.chunks.order_by("ordinal"))
    assert document.chunk_count == len(chunks) >= 2
    assert any("Paging" in c.heading and "PagerDuty" in c.text for c in chunks)
    assert all(c.token_count <= 256 for c in chunks)
    assert all(Chunk.objects.filter(document=document).values_list("search_vector", flat=True))


@pytest.mark.parametrize(
    ("source", "data", "needle"),
    [
        ("vpn.txt", VPN_TXT.encode(), "WireGuard"),
        (
            "page.html",
            b"<html><head><title>Wiki</title><script>var secret=1</script></head>"
            b"<body><h1>Staging</h1><p>The staging cluster is called kestrel.</p></body></html>",
            "kestrel",
        ),
        ("release.docx", _docx_bytes(), "second Thursday"),
    ],
)
def test_each_format_is_indexed(collection, add_document, source, data, needle):
    document = add_document(collection, source, data)
    assert document.status == Document.Status.INDEXED, document.error
    text = " ".join(document.chunks.values_list("text", flat=True))
    assert needle in text
    assert "secret=1" not in text


def test_unchanged_content_is_skipped(collection, add_document):
    first = add_document(collection, "oncall.md", ONCALL_MD)
    chunk_ids = set(first.chunks.values_list("id", flat=True))
    registration = indexing.register_file(collection, "oncall.md", ONCALL_MD.encode())
    assert registration.changed is False
    assert set(Chunk.objects.filter(document=first).values_list("id", flat=True)) == chunk_ids
    assert Document.objects.get(pk=first.pk).version == 1


def test_changed_content_gets_a_new_version_and_replaces_chunks(collection, add_document):
    first = add_document(collection, "oncall.md", ONCALL_MD)
    second = add_document(collection, "oncall.md", ONCALL_MD.replace("5 minutes", "7 minutes"))
    assert second.pk == first.pk
    assert second.version == 2
    texts = " ".join(second.chunks.values_list("text", flat=True))
    assert "7 minutes" in texts and "5 minutes" not in texts
    assert Chunk.objects.filter(document=second).count() == second.chunk_count


def test_indexing_twice_is_idempotent(collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    again = indexing.index_document(document.pk)
    assert again.version == 1
    assert again.chunks.count() == document.chunk_count


BAD_INPUTS = [
    ("empty.md", b"", "empty"),
    ("binary.txt", bytes(range(256)) * 8, "binary"),
    ("latin1.txt", "Café au lait, crème brûlée".encode("latin-1"), "UTF-8"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref", "PDF"),
    ("slides.pages", b"whatever", "Unsupported file type .pages"),
]


@pytest.mark.parametrize(("source", "data", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_marks_only_that_document_failed(collection, add_document, source, data, reason):
    good = add_document(collection, "expenses.md", EXPENSES_MD)
    bad = add_document(collection, source, data)
    assert bad.status == Document.Status.FAILED
    assert reason.lower() in bad.error.lower()
    assert bad.chunks.count() == 0
    assert Document.objects.get(pk=good.pk).status == Document.Status.INDEXED
    assert good.chunks.count() == good.chunk_count > 0


def test_file_over_the_size_limit_fails_with_sizes_in_the_reason(collection, add_document, settings):
    settings.MAX_UPLOAD_MB = 0.001
    document = add_document(collection, "big.md", "# Big\n\n" + "word " * 1000)
    assert document.status == Document.Status.FAILED
    assert "MB" in document.error and "MAX_UPLOAD_MB" in document.error
    assert not document.file


def test_failed_document_is_retried_when_uploaded_again(collection, add_document):
    failed = add_document(collection, "notes.md", b"")
    assert failed.status == Document.Status.FAILED
    fixed = add_document(collection, "notes.md", "# Notes\n\nThe wiki lives at wiki.northwind.test.")
    assert fixed.status == Document.Status.INDEXED
    assert fixed.error == ""


def test_ingest_job_runs_on_the_real_queue(
    collection, ingest_queue, run_ingest_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        registration = indexing.register_file(collection, "oncall.md", ONCALL_MD.encode())
        indexing.enqueue_index(registration.document)
        bad = indexing.register_file(collection, "empty.txt", b"")
        indexing.enqueue_index(bad.document)
    assert ingest_queue.count == 2
    failed_before = ingest_queue.failed_job_registry.count
    job = ingest_queue.jobs[0]
    assert job.timeout == indexing.settings.INGEST_JOB_TIMEOUT
    run_ingest_worker()
    assert Document.objects.get(pk=registration.document.pk).status == Document.Status.INDEXED
    assert Document.objects.get(pk=bad.document.pk).status == Document.Status.FAILED
    assert ingest_queue.count == 0
    assert ingest_queue.failed_job_registry.count == failed_before  # bad input is not a crashed job


def test_a_batch_shares_one_embedding_pass_and_a_bad_document_fails_alone(collection):
    good = indexing.register_file(collection, "oncall.md", ONCALL_MD.encode()).document
    bad = indexing.register_file(collection, "broken.pdf", b"%PDF-1.7 not really").document
    other = indexing.register_file(collection, "expenses.md", EXPENSES_MD.encode()).document
    separately = {}
    for name, text in (("oncall.md", ONCALL_MD), ("expenses.md", EXPENSES_MD)):
        solo = indexing.register_file(collection, f"solo-{name}", text.encode()).document
        separately[name] = indexing.index_document(solo.pk)

    results = indexing.index_documents([good.pk, bad.pk, other.pk])

    assert [d.pk for d in results] == [good.pk, bad.pk, other.pk]
    assert [d.status for d in results] == [
        Document.Status.INDEXED,
        Document.Status.FAILED,
        Document.Status.INDEXED,
    ]
    assert "PDF" in results[1].error and not results[1].chunks.exists()
    for document in (results[0], results[2]):
        solo = separately[document.source]
        # The same chunks and, embedded in one pass with other documents, the same vectors.
        batch = list(document.chunks.order_by("ordinal").values_list("text", "embedding"))
        alone = list(solo.chunks.order_by("ordinal").values_list("text", "embedding"))
        assert [t for t, _ in batch] == [t for t, _ in alone]
        for (_, a), (_, b) in zip(batch, alone, strict=True):
            assert float(np.dot(a, b)) > 0.9999
        assert document.progress == 100 and document.version == 1


def test_documents_are_grouped_into_batches_by_count_and_size(collection, settings):
    settings.INGEST_BATCH_DOCUMENTS = 3
    settings.INGEST_BATCH_MB = 1
    small = [Document(collection=collection, source=f"{i}.md", size_bytes=1000) for i in range(7)]
    assert [len(b) for b in indexing.batches(small)] == [3, 3, 1]
    big = Document(collection=collection, source="big.pdf", size_bytes=1_048_000)
    sizes = [len(b) for b in indexing.batches([small[0], big, small[1], small[2], small[3]])]
    assert sizes == [1, 1, 3]  # the big file would take either neighbour's batch over 1 MB


def test_enqueue_puts_one_job_per_batch_on_the_queue(
    collection, ingest_queue, run_ingest_worker, settings, django_capture_on_commit_callbacks
):
    settings.INGEST_BATCH_DOCUMENTS = 2
    texts = {"oncall.md": ONCALL_MD, "expenses.md": EXPENSES_MD, "vpn.txt": VPN_TXT, "empty.txt": ""}
    with django_capture_on_commit_callbacks(execute=True):
        documents = [indexing.register_file(collection, s, t.encode()).document for s, t in texts.items()]
        indexing.enqueue_index(documents)
    failed_before = ingest_queue.failed_job_registry.count
    assert ingest_queue.count == 2
    assert [job.args[0] for job in ingest_queue.jobs] == [
        [d.pk for d in documents[:2]],
        [d.pk for d in documents[2:]],
    ]
    run_ingest_worker()
    statuses = dict(Document.objects.values_list("source", "status"))
    assert statuses == {
        "oncall.md": Document.Status.INDEXED,
        "expenses.md": Document.Status.INDEXED,
        "vpn.txt": Document.Status.INDEXED,
        "empty.txt": Document.Status.FAILED,
    }
    # Bad input fails its document, not the job.
    assert ingest_queue.failed_job_registry.count == failed_before
