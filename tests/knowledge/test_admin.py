import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.knowledge.models import Document
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db


def _upload(admin_client, collection, *files):
    return admin_client.post(
        reverse("admin:knowledge_document_upload"),
        {"collection": collection.pk, "files": list(files)},
        follow=True,
    )


def test_multi_file_upload_queues_each_file_and_the_worker_indexes_them(
    admin_client, collection, ingest_queue, run_ingest_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(
            admin_client,
            collection,
            SimpleUploadedFile("oncall.md", ONCALL_MD.encode()),
            SimpleUploadedFile("expenses.md", EXPENSES_MD.encode()),
            SimpleUploadedFile("empty.txt", b""),
        )
    assert response.status_code == 200
    assert "Queued 3 for indexing" in response.content.decode()
    assert ingest_queue.count == 1  # one job indexes the batch, one embedding pass
    assert len(ingest_queue.jobs[0].args[0]) == 3
    page = admin_client.get(reverse("admin:knowledge_document_changelist")).content.decode()
    assert '<meta http-equiv="refresh"' in page  # refreshes while documents are pending
    run_ingest_worker()
    statuses = dict(Document.objects.values_list("source", "status"))
    assert statuses == {"oncall.md": "indexed", "expenses.md": "indexed", "empty.txt": "failed"}
    page = admin_client.get(reverse("admin:knowledge_document_changelist")).content.decode()
    assert '<progress max="100" value="100">' in page
    assert "The file is empty" in page or "empty" in Document.objects.get(source="empty.txt").error.lower()
    assert '<meta http-equiv="refresh"' not in page


def test_reindex_action_queues_documents_again(
    admin_client,
    collection,
    add_document,
    ingest_queue,
    run_ingest_worker,
    django_capture_on_commit_callbacks,
):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:knowledge_document_changelist"),
            {"action": "reindex", "_selected_action": [document.pk]},
        )
    assert Document.objects.get(pk=document.pk).status == "pending"
    assert ingest_queue.count == 1
    run_ingest_worker()
    refreshed = Document.objects.get(pk=document.pk)
    assert refreshed.status == "indexed" and refreshed.version == 2


def test_chunk_viewer_and_search_box(admin_client, collection, add_document):
    document = add_document(collection, "oncall.md", ONCALL_MD)
    chunks = admin_client.get(
        reverse("admin:knowledge_chunk_changelist") + f"?document__id__exact={document.pk}"
    )
    assert chunks.status_code == 200 and "PagerDuty" in chunks.content.decode()
    found = admin_client.get(reverse("admin:knowledge_document_changelist") + "?q=oncall")
    assert "On-call rotation" in found.content.decode()
    collections = admin_client.get(reverse("admin:knowledge_collection_changelist")).content.decode()
    assert "every channel" in collections
