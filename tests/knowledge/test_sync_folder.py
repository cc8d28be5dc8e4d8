"""A folder source synced again and again: first sync, nothing changed, a change, a deletion, and
listings that must not prune (folder gone, folder empty, most files gone); commands and scheduling."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from console.knowledge import syncing
from console.knowledge.models import Chunk, Document, Source, Sync
from console.knowledge.search import search
from console.knowledge.sources import folder as folder_module
from console.training.models import TrainingPair
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD, VPN_TXT

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(tmp_path, settings):
    settings.SYNC_FOLDER_ROOTS = [tmp_path.resolve()]
    folder = tmp_path / "handbook"
    (folder / "ops").mkdir(parents=True)
    (folder / "ops" / "oncall.md").write_text(ONCALL_MD)
    (folder / "expenses.md").write_text(EXPENSES_MD)
    (folder / "vpn.txt").write_text(VPN_TXT)
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n")
    (folder / ".hidden.md").write_text("# hidden")
    return folder


@pytest.fixture
def source(root, collection):
    return Source.objects.create(
        name="handbook", kind="folder", collection=collection, options={"path": str(root)}
    )


@pytest.fixture
def fetches(monkeypatch):
    """The keys the folder connector reads, sync by sync."""
    seen: list[str] = []
    original = folder_module.FolderConnector.fetch

    def fetch(self, item, previous_version=""):
        seen.append(item.key)
        return original(self, item, previous_version)

    monkeypatch.setattr(folder_module.FolderConnector, "fetch", fetch)
    return seen


def sync(source: Source, **kwargs) -> Sync:
    result = syncing.sync_source(source.pk, **kwargs).sync
    source.refresh_from_db()
    return result


def test_first_sync_indexes_every_readable_file(source, fetches):
    result = sync(source)
    assert (result.status, result.listed, result.added, result.failed) == ("ok", 3, 3, 0)
    assert sorted(fetches) == ["expenses.md", "ops/oncall.md", "vpn.txt"]
    assert source.status == Source.Status.OK and source.last_synced_at and not source.last_error
    documents = Document.objects.filter(source_ref=source)
    assert {d.item_key for d in documents} == {"expenses.md", "ops/oncall.md", "vpn.txt"}
    assert all(d.status == "indexed" and d.chunk_count for d in documents)
    assert documents.get(item_key="ops/oncall.md").title == "On-call rotation"
    hits = search("how fast must on-call acknowledge a page", k=1, collections=["handbook"])
    assert hits[0].document == "On-call rotation"


def test_a_sync_with_nothing_changed_reads_no_file(source, fetches):
    sync(source)
    fetches.clear()
    versions = dict(Document.objects.values_list("item_key", "version"))
    result = sync(source)
    assert fetches == []
    assert (result.added, result.updated, result.unchanged, result.deleted) == (0, 0, 3, 0)
    assert dict(Document.objects.values_list("item_key", "version")) == versions


def test_a_changed_file_is_indexed_again_and_its_pairs_go_stale(source, root, fetches):
    sync(source)
    document = Document.objects.get(item_key="expenses.md")
    pair = TrainingPair.objects.create(
        question="q",
        answer="a",
        source="manual",
        documents=[{"document_id": document.pk, "version": document.version}],
    )
    fetches.clear()
    (root / "expenses.md").write_text(EXPENSES_MD.replace("60 euros", "75 euros"))
    os.utime(root / "expenses.md", ns=(1, 1))  # a new modification time, whatever the clock
    result = sync(source)
    assert fetches == ["expenses.md"]
    assert (result.updated, result.unchanged) == (1, 2)
    document.refresh_from_db()
    assert document.version == 2
    assert any(
        "75 euros" in text for text in Chunk.objects.filter(document=document).values_list("text", flat=True)
    )
    pair.refresh_from_db()
    assert pair.stale


def test_a_deleted_file_leaves_with_its_chunks_and_its_pairs_go_stale(source, root):
    sync(source)
    gone = Document.objects.get(item_key="vpn.txt")
    pair = TrainingPair.objects.create(
        question="q",
        answer="a",
        source="manual",
        documents=[{"document_id": gone.pk, "version": gone.version}],
    )
    (root / "vpn.txt").unlink()
    result = sync(source)
    assert (result.status, result.deleted) == ("ok", 1)
    assert not Document.objects.filter(pk=gone.pk).exists()
    assert not Chunk.objects.filter(document_id=gone.pk).exists()
    pair.refresh_from_db()
    assert pair.stale


def test_a_missing_folder_fails_the_sync_and_deletes_nothing(source, root):
    sync(source)
    root.rename(root.with_name("moved"))
    result = sync(source)
    assert result.status == "failed" and "missing" in result.error
    assert source.status == Source.Status.FAILED and "missing" in source.last_error
    assert Document.objects.filter(source_ref=source, status="indexed").count() == 3


def test_an_empty_listing_flags_the_source_and_keeps_its_documents(source, root):
    sync(source)
    for file in ("expenses.md", "vpn.txt", "ops/oncall.md"):
        (root / file).unlink()
    result = sync(source)
    assert result.status == "flagged" and "listed no items" in result.error
    assert source.status == Source.Status.FLAGGED
    assert Document.objects.filter(source_ref=source).count() == 3


def test_a_listing_that_shrank_too_much_prunes_nothing_until_a_person_allows_it(source, root, settings):
    settings.SYNC_PRUNE_MAX_SHARE = 0.5
    sync(source)
    (root / "expenses.md").unlink()
    (root / "vpn.txt").unlink()
    result = sync(source)
    assert (
        result.status == "flagged"
        and "SYNC_PRUNE_MAX_SHARE" in result.error
        and "--allow-prune" in result.error
    )
    assert Document.objects.filter(source_ref=source).count() == 3
    result = sync(source, allow_prune=True)
    assert (result.status, result.deleted) == ("ok", 2)
    assert list(Document.objects.filter(source_ref=source).values_list("item_key", flat=True)) == [
        "ops/oncall.md"
    ]


def test_one_bad_file_fails_alone_and_is_retried(source, root, settings):
    (root / "empty.md").write_text("")
    result = sync(source)
    assert (result.status, result.added, result.failed) == ("flagged", 3, 1)
    bad = Document.objects.get(item_key="empty.md")
    assert bad.status == "failed" and "empty" in bad.error
    (root / "empty.md").write_text("# Now\n\nIt has text about the coffee machine.")
    result = sync(source)
    assert (result.status, result.updated, result.failed) == ("ok", 1, 0)
    bad.refresh_from_db()
    assert bad.status == "indexed"


def test_include_and_exclude_globs(source, root):
    source.options = {"path": str(root), "include": "*.md", "exclude": "ops/*"}
    source.save()
    sync(source)
    assert list(Document.objects.filter(source_ref=source).values_list("item_key", flat=True)) == [
        "expenses.md"
    ]


def test_a_source_cannot_read_folders_outside_the_allowed_roots(collection, settings, tmp_path):
    settings.SYNC_FOLDER_ROOTS = [(tmp_path / "docs").resolve()]
    with pytest.raises(CommandError, match="SYNC_FOLDER_ROOTS"):
        call_command("add_source", "secrets", "folder", collection="handbook", option=["path=/etc"])
    assert not Source.objects.exists()


def test_add_source_creates_then_updates_and_sync_prints_a_summary(root, collection):
    out = io.StringIO()
    call_command("add_source", "hb", "folder", collection="handbook", option=[f"path={root}"], stdout=out)
    assert "Created source 'hb'" in out.getvalue()
    call_command(
        "add_source",
        "hb",
        "folder",
        collection="handbook",
        option=[f"path={root}"],
        schedule="*/15 * * * *",
        stdout=out,
    )
    source = Source.objects.get(name="hb")
    assert source.schedule == "*/15 * * * *"
    with pytest.raises(CommandError, match="cron"):
        call_command(
            "add_source", "hb", "folder", collection="handbook", option=[f"path={root}"], schedule="hourly"
        )
    with pytest.raises(CommandError, match="Unknown option 'pth'"):
        call_command("add_source", "hb", "folder", collection="handbook", option=[f"pth={root}"])

    out = io.StringIO()
    call_command("sync", "hb", "--dry-run", stdout=out)
    assert "would add: expenses.md" in out.getvalue()
    assert not Document.objects.exists() and not Sync.objects.exists()

    out = io.StringIO()
    call_command("sync", "hb", "--sync", stdout=out)
    assert "hb: OK — 3 listed, added 3" in out.getvalue()

    root.rename(root.with_name("gone"))
    with pytest.raises(CommandError, match="Sync failed for hb"):
        call_command("sync", "hb", "--sync", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No source named nope"):
        call_command("sync", "nope", stdout=io.StringIO())


def test_sync_shows_a_progress_bar_over_the_items_it_fetches(source, capsys):
    call_command("sync", source.name, "--sync", stdout=io.StringIO())
    bar = capsys.readouterr().err
    assert f"{source.name}:" in bar and "3/3" in bar and "added=3" in bar


def test_due_sources_are_queued_once_and_synced_by_a_worker(
    source, ingest_queue, run_ingest_worker, django_capture_on_commit_callbacks
):
    from console.knowledge import jobs

    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sync_due_sources() == [source.pk]  # never synced: due at once
    assert jobs.sync_due_sources() == []  # queued already
    source.refresh_from_db()
    assert source.status == Source.Status.SYNCING and source.next_sync_at
    run_ingest_worker()
    source.refresh_from_db()
    assert source.status == Source.Status.OK
    assert Document.objects.filter(source_ref=source, status="indexed").count() == 3
    assert jobs.sync_due_sources() == []  # next one on the hour


def test_an_interrupted_sync_leaves_the_source_failed(source):
    source.queued()
    Sync.objects.create(source=source)
    syncing.mark_interrupted(source.pk, "JobTimeoutException")
    source.refresh_from_db()
    assert source.status == Source.Status.FAILED and "interrupted" in source.last_error
    assert source.syncs.get().status == Sync.Status.FAILED


def test_the_cron_config_registers_the_due_check_and_the_sweep_with_rq():
    from rq.cron import CronScheduler

    from console.knowledge.jobs import sync_due_sources
    from console.sweeping import sweep

    scheduler = CronScheduler(connection=None)  # type: ignore[arg-type]
    scheduler.load_config_from_file("console.cron")
    assert {(job.func, job.queue_name, job.cron) for job in scheduler.get_jobs()} == {
        (sync_due_sources, "ingest", "* * * * *"),
        (sweep, "answer", "* * * * *"),
    }


def test_runall_starts_rq_cron():
    from console.management.commands.runall import process_table

    assert process_table("127.0.0.1:8000")["cron"].endswith("manage.py rqcron console.cron")


def test_two_syncs_of_one_source_never_run_at_once(source):
    import threading

    from django.db import connections

    held, release = threading.Event(), threading.Event()

    def other_sync() -> None:  # another process's connection holding the source's lock
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [syncing._LOCK_SPACE, source.pk])
            held.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [syncing._LOCK_SPACE, source.pk])
        connections["default"].close()

    thread = threading.Thread(target=other_sync)
    thread.start()
    held.wait(10)
    try:
        result = syncing.sync_source(source.pk).sync
    finally:
        release.set()
        thread.join()
    assert result.pk is None and "Another sync" in result.error
    assert not Document.objects.exists()
    assert sync(source).added == 3


@pytest.mark.slow
def test_bootstrap_adds_the_demo_as_a_synced_folder_source(settings):
    from django.conf import settings as live

    settings.SYNC_FOLDER_ROOTS = [live.BASE_DIR / "examples"]
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    source = Source.objects.get(name="demo-handbook")
    assert (source.kind, source.status, source.schedule) == ("folder", Source.Status.OK, "0 * * * *")
    assert source.documents.filter(status="indexed").count() == len(
        [
            p
            for p in (live.BASE_DIR / "examples" / "knowledge").iterdir()
            if p.suffix in (".md", ".txt", ".html")
        ]
    )
    # Synced in-process, it is not due again until its schedule says so (the next full hour).
    assert source.next_sync_at is not None and source.next_sync_at > timezone.now()
    assert source.next_sync_at.minute == 0
    assert syncing.due_sources() == []
    call_command("bootstrap", stdout=io.StringIO())  # a second start adds nothing
    assert Source.objects.count() == 1
