"""Deleting a document deletes its stored file; purging also redacts its text from recorded answers
and training pairs, and needs its own permission."""

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from console.conversations.models import Answer
from console.knowledge.models import Chunk, Document
from console.training.models import TrainingPair
from ml.prompting import PURGED
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:knowledge_document_changelist"


@pytest.fixture
def documents(collection, add_document):
    return add_document(collection, "oncall.md", ONCALL_MD), add_document(
        collection, "expenses.md", EXPENSES_MD
    )


def item(number: int, chunk: Chunk) -> dict:
    return {"number": number, "title": chunk.document.title, "heading": chunk.heading, "text": chunk.text}


@pytest.fixture
def records(documents):
    """An answer and pairs that saw a chunk of each document: [1] on-call, [2] expenses."""
    oncall, expenses = (document.chunks.first() for document in documents)
    retrieved = [
        {
            "chunk_id": c.pk,
            "document_id": c.document_id,
            "document_version": 1,
            "score": 1.0,
            "similarity": 0.9,
        }
        for c in (oncall, expenses)
    ]
    context = [item(1, oncall), item(2, expenses)]
    sources = [
        {"number": n, "cited": True, "document": c.document.title, "source": c.document.source, "heading": ""}
        for n, c in ((1, oncall), (2, expenses))
    ]
    answer = Answer.objects.create(
        platform="web",
        question="Who is on call?",
        text="Alex [1].",
        mode="rag",
        retrieved=retrieved,
        context=context,
        sources=sources,
    )
    documents_seen = [{"document_id": c.document_id, "version": 1} for c in (oncall, expenses)]
    pair = TrainingPair.objects.create(
        question="Who is on call?",
        answer="Alex.",
        source="feedback",
        origin=answer,
        context=context,
        documents=documents_seen,
    )
    imported = TrainingPair.objects.create(
        question="On call?", answer="Alex.", source="import", context=[{"text": oncall.text}]
    )
    return answer, pair, imported


def purge(client, *documents):
    data = {"action": "purge", "_selected_action": [str(d.pk) for d in documents]}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_deleting_a_document_deletes_its_stored_file(
    admin_client, documents, django_capture_on_commit_callbacks
):
    oncall = documents[0]
    stored = Path(oncall.file.path)
    assert stored.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:knowledge_document_delete", args=[oncall.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    assert not Document.objects.filter(pk=oncall.pk).exists() and not stored.exists()
    assert Path(documents[1].file.path).exists()


def test_purge_deletes_and_redacts_answers_and_pairs(
    admin_client, documents, records, django_capture_on_commit_callbacks
):
    oncall, expenses = documents
    secret = oncall.chunks.first().text
    stored = Path(oncall.file.path)

    with django_capture_on_commit_callbacks(execute=True):
        response = purge(admin_client, oncall)

    assert "Purged 1 document(s)" in response.content.decode()
    assert not Document.objects.filter(pk=oncall.pk).exists() and not stored.exists()
    answer, pair, imported = (type(r).objects.get(pk=r.pk) for r in records)
    assert answer.context[0] == {"number": 1, "title": PURGED, "heading": "", "text": PURGED}
    assert answer.context[1]["text"] == expenses.chunks.first().text  # the other document stays
    assert answer.sources[0]["document"] == PURGED and answer.sources[0]["source"] == ""
    assert answer.sources[1]["source"] == "expenses.md"
    assert pair.context[0]["text"] == PURGED and pair.context[1]["text"] == expenses.chunks.first().text
    assert imported.context == [{"text": PURGED, "title": PURGED, "heading": ""}]
    for record in (answer, pair, imported):
        assert secret not in str(record.context) and secret not in str(getattr(record, "sources", ""))


@pytest.fixture
def deleter(client):
    """Staff who may view and delete documents, but not purge them."""
    user = User.objects.create_user("deleter", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_document", "delete_document", "change_document"])
    )
    client.force_login(user)
    return user


def test_purge_needs_its_own_permission(client, deleter, documents, records):
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="purge"' not in page

    purge(client, documents[0])

    assert Document.objects.filter(pk=documents[0].pk).exists()
    assert Answer.objects.get().context[0]["text"] != PURGED

    deleter.user_permissions.add(Permission.objects.get(codename="purge_document"))
    assert 'value="purge"' in client.get(reverse(CHANGELIST)).content.decode()
    purge(client, documents[0])
    assert not Document.objects.filter(pk=documents[0].pk).exists()


def test_purge_redacts_the_contexts_a_training_run_recorded(
    admin_client, documents, django_capture_on_commit_callbacks
):
    from console.training.models import TrainingRun

    oncall, expenses = documents
    secret, kept = oncall.chunks.first(), expenses.chunks.first()
    context = [item(1, secret), item(2, kept)]
    run = TrainingRun.objects.create(
        name="r1",
        examples=[
            {
                "pair_id": 1,
                "question": "q",
                "answer": "a",
                "context": context,
                "context_from": "retrieval",
                "heldout": False,
            }
        ],
        evaluation=[{"question": "q", "reference": "a", "context": context, "base": "b", "candidate": "c"}],
    )

    with django_capture_on_commit_callbacks(execute=True):
        purge(admin_client, oncall)

    run.refresh_from_db()
    assert secret.text not in str(run.examples) and secret.text not in str(run.evaluation)
    assert run.examples[0]["context"][1]["text"] == kept.text
    assert run.evaluation[0]["context"][0]["text"] == PURGED
