"""Admin permissions are real: a view-only staff user can read the console but change nothing, and
each sensitive step (upload, train, promote or roll back, evaluations, API keys, restricted pairs,
the queue dashboard) needs its own permission."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.conversations.models import ApiKey
from console.knowledge.models import Collection, Document
from console.training.models import TrainingPair, TrainingRun

pytestmark = pytest.mark.django_db

APPS = ["knowledge", "conversations", "training"]


def staff(username: str, *codenames: str) -> User:
    """A staff user with every view permission of our apps, plus `codenames` (app_label.codename)."""
    user = User.objects.create_user(username, password="x", is_staff=True)
    views = Permission.objects.filter(content_type__app_label__in=APPS, codename__startswith="view_")
    extra = [
        Permission.objects.get(content_type__app_label=a, codename=c)
        for a, c in (n.split(".") for n in codenames)
    ]
    user.user_permissions.set([*views, *extra])
    return user


@pytest.fixture
def viewer(client):
    client.force_login(staff("viewer"))
    return client


def act(client, model: str, action: str, *objects):
    return client.post(
        reverse(f"admin:{model}_changelist"), {"action": action, "_selected_action": [o.pk for o in objects]}
    )


def test_every_admin_action_declares_its_permissions():
    undeclared = [
        f"{type(model_admin).__name__}.{name}"
        for model_admin in admin.site._registry.values()
        for func, name, _ in model_admin._get_base_actions()
        if not getattr(func, "allowed_permissions", None)
    ]
    assert undeclared == []


def test_a_view_only_user_reads_the_lists(viewer):
    for model in (
        "knowledge_document",
        "training_trainingrun",
        "training_trainingpair",
        "conversations_apikey",
    ):
        assert viewer.get(reverse(f"admin:{model}_changelist")).status_code == 200


def test_uploading_documents_needs_its_permission(viewer, client, collection):
    upload = reverse("admin:knowledge_document_upload")
    assert viewer.get(upload).status_code == 403
    files = {"collection": collection.pk, "files": [SimpleUploadedFile("a.md", b"# A\n\ntext")]}
    assert viewer.post(upload, files).status_code == 403
    assert (
        "Upload documents" not in viewer.get(reverse("admin:knowledge_document_changelist")).content.decode()
    )
    assert not Document.objects.exists()
    client.force_login(staff("uploader", "knowledge.add_document"))
    assert client.get(upload).status_code == 200


def test_reindexing_needs_the_change_permission(viewer, collection, add_document):
    document = add_document(collection, "a.md", "# A\n\ntext")
    act(viewer, "knowledge_document", "reindex", document)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED


def test_starting_or_retrying_training_needs_its_permission(viewer, client, settings):
    settings.TRAIN_MIN_PAIRS = 1
    TrainingPair.objects.create(question="q", answer="a", source="manual", status="approved")
    assert viewer.post(reverse("admin:training_trainingrun_train")).status_code == 403
    assert "Train now" not in viewer.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    failed = TrainingRun.objects.create(name="broken", status="failed")
    act(viewer, "training_trainingrun", "retry", failed)
    assert TrainingRun.objects.get(pk=failed.pk).status == "failed"
    assert TrainingRun.objects.count() == 1
    client.force_login(staff("trainer", "training.start_training"))
    assert "Train now" in client.get(reverse("admin:training_trainingrun_changelist")).content.decode()


def test_promoting_or_rolling_back_needs_its_permission(viewer, client, tmp_path):
    old = TrainingRun.objects.create(name="v1", status="succeeded", adapter_path=str(tmp_path), active=True)
    new = TrainingRun.objects.create(name="v2", status="succeeded", adapter_path=str(tmp_path))
    act(viewer, "training_trainingrun", "make_live", new)
    assert list(TrainingRun.objects.filter(active=True)) == [old]
    client.force_login(staff("releaser", "training.promote_adapter"))
    act(client, "training_trainingrun", "make_live", new)
    assert list(TrainingRun.objects.filter(active=True)) == [new]


def test_reading_evaluations_needs_its_permission(viewer, client):
    run = TrainingRun.objects.create(
        name="v3", status="succeeded", evaluation=[{"question": "SECRET-QUESTION", "reference": "r"}]
    )
    url = reverse("admin:training_trainingrun_evaluation", args=[run.pk])
    refused = viewer.get(url)
    assert refused.status_code == 403 and "SECRET-QUESTION" not in refused.content.decode()
    client.force_login(staff("evaluator", "training.read_evaluation"))
    assert "SECRET-QUESTION" in client.get(url).content.decode()


def test_managing_api_keys_needs_its_permissions(viewer):
    assert viewer.get(reverse("admin:conversations_apikey_add")).status_code == 403
    assert viewer.post(reverse("admin:conversations_apikey_add"), {"name": "mine"}).status_code == 403
    key = ApiKey.objects.create(name="docs", prefix="ab-1234", key_hash="0" * 64)
    act(viewer, "conversations_apikey", "revoke", key)
    assert ApiKey.objects.get(pk=key.pk).active is True and ApiKey.objects.count() == 1


def test_curating_pairs_needs_the_change_permission(viewer):
    pair = TrainingPair.objects.create(question="q", answer="a", source="feedback")
    act(viewer, "training_trainingpair", "approve", pair)
    assert TrainingPair.objects.get(pk=pair.pk).status == "candidate"


def test_restricted_pairs_are_badged_filtered_and_included_only_with_the_dedicated_permission(client):
    open_pair = TrainingPair.objects.create(
        question="q1", answer="a", source="feedback", collections=["handbook"]
    )
    secret = TrainingPair.objects.create(
        question="q2", answer="a", source="feedback", status="approved", restricted=True, collections=["ops"]
    )
    curator = staff("curator", "training.change_trainingpair")
    client.force_login(curator)
    page = client.get(reverse("admin:training_trainingpair_changelist"), {"access": "restricted"})
    assert [p.pk for p in page.context["cl"].result_list] == [secret.pk]
    assert "restricted</b>" in page.content.decode()
    listed = client.get(reverse("admin:training_trainingpair_changelist"), {"access": "open"})
    assert [p.pk for p in listed.context["cl"].result_list] == [open_pair.pk]

    act(client, "training_trainingpair", "include_restricted", secret)  # not offered to this curator
    assert TrainingPair.objects.get(pk=secret.pk).include_restricted is False
    assert not TrainingPair.objects.trainable().exists()

    client.force_login(staff("senior", "training.change_trainingpair", "training.include_restricted_pair"))
    act(client, "training_trainingpair", "include_restricted", secret)
    assert TrainingPair.objects.get(pk=secret.pk).include_restricted is True
    assert list(TrainingPair.objects.trainable()) == [secret]
    history = client.get(reverse("admin:training_trainingpair_history", args=[secret.pk])).content.decode()
    assert "Included in training despite restricted context." in history


def test_the_queue_dashboard_is_for_superusers(viewer, admin_client):
    from django.test import Client

    assert viewer.get("/admin/rq/").status_code == 403
    assert viewer.get("/admin/rq/queues/0/").status_code == 403
    assert viewer.get("/admin/django_rq/dashboard/").status_code == 404  # django-rq's own admin entry is off
    assert Client().get("/admin/rq/").status_code == 302  # anonymous: the login page
    assert admin_client.get("/admin/rq/").status_code == 200


def test_a_collection_is_not_changed_by_a_viewer(viewer, collection):
    url = reverse("admin:knowledge_collection_change", args=[collection.pk])
    viewer.post(url, {"name": "Renamed", "slug": "renamed", "allowed_scopes": ""})
    assert Collection.objects.get(pk=collection.pk).name == "Handbook"
