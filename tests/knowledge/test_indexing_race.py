"""Two uploads of one file racing end with the newer content indexed, whichever job ends first."""

import pytest

from console.knowledge import indexing
from console.knowledge.models import Document

OLD = "# Parking\n\nVisitors park in the blue garage on level 2.\n"
NEW = "# Parking\n\nVisitors park in the green garage on level 5.\n"


def _texts(document: Document) -> str:
    return " ".join(document.chunks.values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
def test_an_upload_landing_while_the_old_one_is_embedded_is_not_lost(collection):
    """The old job read the old bytes, then the new upload arrived: the old job must not mark the
    document indexed with stale chunks (the new job would then skip it as already indexed)."""
    document = indexing.register_file(collection, "parking.md", OLD.encode()).document
    uploaded = []

    def upload_newer(done: int, total: int) -> None:  # called while the old content is embedded
        if not uploaded:
            uploaded.append(indexing.register_file(collection, "parking.md", NEW.encode()))

    indexing.index_documents([document.pk], progress=upload_newer)
    document.refresh_from_db()
    assert uploaded and uploaded[0].changed
    assert document.status == Document.Status.PENDING, "the newer upload is left for its own job"
    assert "blue" not in _texts(document)

    indexing.index_documents([document.pk])  # the newer upload's job
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED
    assert "green garage on level 5" in _texts(document)
    assert "blue" not in _texts(document)


@pytest.mark.django_db(transaction=True)
def test_an_old_job_finishing_after_the_new_one_does_not_overwrite_it(collection):
    document = indexing.register_file(collection, "parking.md", OLD.encode()).document
    newer_done = []

    def upload_and_index_newer(done: int, total: int) -> None:
        if not newer_done:
            newer_done.append(True)
            indexing.register_file(collection, "parking.md", NEW.encode())
            indexing.index_documents([document.pk])  # the newer job overtakes the older one

    indexing.index_documents([document.pk], progress=upload_and_index_newer)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED
    assert document.version == 1, "only the newer content was stored"
    assert "green garage on level 5" in _texts(document)
    assert "blue" not in _texts(document)


@pytest.mark.django_db
def test_a_failure_of_old_content_does_not_fail_the_newer_upload(collection):
    old = indexing.register_file(collection, "parking.md", OLD.encode()).document  # as the old job read it
    indexing.register_file(collection, "parking.md", NEW.encode())
    assert not old.fail("Could not read the file.", content_hash=old.content_hash)
    fresh = Document.objects.get(pk=old.pk)
    assert fresh.status == Document.Status.PENDING
    assert fresh.error == ""

    assert fresh.fail("Could not read the file.", content_hash=fresh.content_hash)
    assert Document.objects.get(pk=old.pk).status == Document.Status.FAILED
