"""Sources in general: credentials by environment-variable name only, candidate pairs a source
nominates, the admin (list, history, Sync now and its permission), and schedules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.urls import reverse

from console.knowledge import syncing
from console.knowledge.models import Document, Source, Sync
from console.knowledge.sources import CONNECTORS, Candidate, Connector, Content, Item, SourceError
from console.settings import source_secret
from console.training.models import TrainingPair

pytestmark = pytest.mark.django_db


class ThreadsConnector(Connector):
    """A stand-in for a chat connector: one thread whose accepted answer nominates a pair."""

    kind = "threads-test"
    option_names = ("token_env",)
    seen_secrets: dict[str, str] = {}

    def items(self) -> Iterator[Item]:
        ThreadsConnector.seen_secrets = dict(self.secrets)
        if self.secrets.get("THREADS_TOKEN") == "fail":
            raise SourceError("The server said no.")
        yield Item(key="T1", version="v1", title="How do I reset 2FA?", url="https://chat.example/T1")

    def fetch(self, item: Item, previous_version: str = "") -> Content:
        answer = "Ask in #it-help; they reset it after a video call."
        return Content(
            filename="thread.md",
            data=f"# {item.title}\n\n{answer}".encode(),
            candidates=(Candidate(question=item.title, answer=answer),),
        )


@pytest.fixture
def threads_kind():
    CONNECTORS[ThreadsConnector.kind] = ThreadsConnector
    yield ThreadsConnector
    del CONNECTORS[ThreadsConnector.kind]


def test_credentials_come_from_the_named_variable_at_sync_time(threads_kind, collection, monkeypatch):
    monkeypatch.setenv("THREADS_TOKEN", "xoxb-very-secret")
    source = Source.objects.create(
        name="chat", kind=threads_kind.kind, collection=collection, options={"token_env": "THREADS_TOKEN"}
    )
    result = syncing.sync_source(source.pk).sync
    assert result.status == "ok", result.error
    assert threads_kind.seen_secrets == {"THREADS_TOKEN": "xoxb-very-secret"}
    source.refresh_from_db()
    assert "xoxb" not in str(source.options) and "xoxb" not in source.last_error


def test_a_source_may_not_read_the_servers_own_secrets(threads_kind, collection):
    source = Source.objects.create(
        name="chat", kind=threads_kind.kind, collection=collection, options={"token_env": "SECRET_KEY"}
    )
    result = syncing.sync_source(source.pk).sync
    assert result.status == "failed" and "own credentials" in result.error
    assert threads_kind.seen_secrets.get("SECRET_KEY") is None
    for name in ("DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "lower", "A-B"):
        with pytest.raises(ValueError):
            source_secret(name)


def test_an_unset_variable_fails_the_sync_with_its_name(threads_kind, collection, monkeypatch):
    monkeypatch.delenv("THREADS_TOKEN", raising=False)
    source = Source.objects.create(
        name="chat", kind=threads_kind.kind, collection=collection, options={"token_env": "THREADS_TOKEN"}
    )
    result = syncing.sync_source(source.pk).sync
    assert result.status == "failed" and "THREADS_TOKEN" in result.error and "not set" in result.error


def test_nominated_pairs_become_candidates_once(threads_kind, collection, monkeypatch):
    monkeypatch.setenv("THREADS_TOKEN", "t")
    source = Source.objects.create(
        name="chat", kind=threads_kind.kind, collection=collection, options={"token_env": "THREADS_TOKEN"}
    )
    syncing.sync_source(source.pk)
    pair = TrainingPair.objects.get()
    assert (pair.source, pair.status, pair.question) == ("sync", "candidate", "How do I reset 2FA?")
    assert pair.collections == ["handbook"]
    Document.objects.filter(source_ref=source).update(item_version="old")  # fetched again
    syncing.sync_source(source.pk)
    assert TrainingPair.objects.count() == 1
    document = Document.objects.get(source_ref=source)
    assert document.title == "How do I reset 2FA?" and document.url == "https://chat.example/T1"


def test_schedules_are_cron_expressions(collection):
    source = Source(name="x", kind="folder", collection=collection, options={}, schedule="every hour")
    with pytest.raises(ValidationError) as caught:
        source.full_clean()
    assert "schedule" in caught.value.message_dict
    source.schedule = "*/15 * * * *"
    assert source.next_run_after(datetime(2026, 1, 1, 10, 7, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="knowledge", codename__startswith="view_")
    extra = Permission.objects.filter(content_type__app_label="knowledge", codename__in=codenames)
    user.user_permissions.set([*perms, *extra])
    return user


@pytest.fixture
def synced(collection, tmp_path, settings):
    settings.SYNC_FOLDER_ROOTS = [tmp_path.resolve()]
    (tmp_path / "a.md").write_text("# A\n\nThe kettle is in the kitchen.")
    source = Source.objects.create(
        name="hb", kind="folder", collection=collection, options={"path": str(tmp_path)}
    )
    syncing.sync_source(source.pk)
    return source


def test_the_admin_lists_sources_with_status_counts_and_history(client, synced):
    client.force_login(staff("viewer"))
    listing = client.get(reverse("admin:knowledge_source_changelist")).content.decode()
    assert "hb" in listing and "1 added" in listing and "OK" in listing
    page = client.get(reverse("admin:knowledge_source_change", args=[synced.pk])).content.decode()
    assert "Sync history" in page and " s<" in page  # a duration


def test_sync_now_needs_its_own_permission(client, synced, django_capture_on_commit_callbacks, ingest_queue):
    url = reverse("admin:knowledge_source_changelist")
    post = {"action": "sync_now", "_selected_action": [synced.pk]}
    client.force_login(staff("editor", "change_source"))
    client.post(url, post)
    synced.refresh_from_db()
    assert synced.status == Source.Status.OK and len(ingest_queue) == 0
    client.force_login(staff("syncer", "sync_source"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, post)
    synced.refresh_from_db()
    assert synced.status == Source.Status.SYNCING and len(ingest_queue) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, post, follow=True)
    assert "already had a sync queued" in response.content.decode() and len(ingest_queue) == 1


def test_admin_validates_options_with_the_connector(admin_client, collection, tmp_path, settings):
    settings.SYNC_FOLDER_ROOTS = [tmp_path.resolve()]
    response = admin_client.post(
        reverse("admin:knowledge_source_add"),
        {"name": "x", "kind": "folder", "collection": collection.pk, "options": '{"path": "/etc"}', "schedule": "0 * * * *",
         "enabled": "on", "syncs-TOTAL_FORMS": "0", "syncs-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert response.status_code == 200 and "SYNC_FOLDER_ROOTS" in response.content.decode()
    assert not Source.objects.exists()
    assert Sync.objects.count() == 0
