"""Hostile or broken files: refused with a clear reason, without reading past the limit, and alone.

A zip bomb dressed as .docx, HTML nested thousands deep, a file over MAX_UPLOAD_MB: each fails as
its own document with its reason, and the good files of the same batch are indexed.
"""

import io
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from console.knowledge import indexing
from console.knowledge.models import Document
from ml.parsing import ParseError, ParseLimits, parse_document
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD

pytestmark = pytest.mark.django_db


def zip_bomb(*, unpacked_mb: int = 0, entries: int = 1) -> bytes:
    """A zip with Word's parts and either one highly compressible part or very many tiny ones."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (unpacked_mb * 1024 * 1024))
        for number in range(entries - 2):
            archive.writestr(f"word/media/{number}.xml", "")
    return buffer.getvalue()


def deep_html(levels: int) -> bytes:
    return ("<html><body>" + "<div>x " * levels + "</div>" * levels + "</body></html>").encode()


def test_a_docx_that_unpacks_to_too_much_is_a_zip_bomb():
    bomb = zip_bomb(unpacked_mb=3)

    with pytest.raises(ParseError, match="zip bomb") as refused:
        parse_document("report.docx", bomb, limits=ParseLimits(max_unpacked_bytes=2 * 1024 * 1024))

    assert len(bomb) < 50_000 and "MAX_UNPACKED_MB" in str(refused.value)


def test_a_docx_with_too_many_parts_is_a_zip_bomb():
    with pytest.raises(ParseError, match="zip bomb") as refused:
        parse_document("report.docx", zip_bomb(entries=300), limits=ParseLimits(max_archive_entries=200))

    assert "300 parts" in str(refused.value) and "MAX_ARCHIVE_ENTRIES" in str(refused.value)


def test_deeply_nested_html_is_refused_fast():
    started = time.perf_counter()

    with pytest.raises(ParseError, match="256 levels deep"):
        parse_document("page.html", deep_html(20_000))

    assert time.perf_counter() - started < 10  # the unbounded walk took ~100 s at this depth


def test_html_nested_within_the_limit_is_read():
    parsed = parse_document("page.html", deep_html(100))

    assert parsed.sections and "x" in parsed.sections[0].text


class CountingStream(io.BytesIO):
    """A file that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_an_oversized_stream_is_read_no_further_than_the_limit(collection, settings):
    settings.MAX_UPLOAD_MB = 0.01  # 10,485 bytes
    limit = indexing.max_upload_bytes()
    unsized, sized = CountingStream(b"a" * 1_000_000), CountingStream(b"a" * 1_000_000)

    first = indexing.register_stream(collection, "big.txt", unsized)
    second = indexing.register_stream(collection, "big2.txt", sized, 1_000_000)

    assert unsized.bytes_read == limit + 1 and sized.bytes_read == 0
    for registration in (first, second):
        assert not registration.changed and registration.document.status == "failed"
        assert "MAX_UPLOAD_MB" in registration.document.error
        assert not registration.document.file


def test_an_oversized_admin_upload_fails_alone_with_the_limit(
    admin_client, collection, settings, django_capture_on_commit_callbacks
):
    settings.MAX_UPLOAD_MB = 0.01
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            reverse("admin:knowledge_document_upload"),
            {
                "collection": collection.pk,
                "files": [
                    SimpleUploadedFile("huge.md", b"# Huge\n" + b"words " * 10_000),
                    SimpleUploadedFile("oncall.md", ONCALL_MD.encode()),
                ],
            },
            follow=True,
        )

    assert "Queued 1 for indexing, 0 unchanged, 1 failed." in response.content.decode()
    huge = Document.objects.get(source="huge.md")
    assert huge.status == "failed" and "0.01 MB limit (MAX_UPLOAD_MB)" in huge.error
    assert Document.objects.get(source="oncall.md").status == "pending"


def test_one_bad_file_fails_alone_never_its_batch(tmp_path, settings):
    settings.MAX_UNPACKED_MB = 2
    settings.MAX_UPLOAD_MB = 1
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "oncall.md").write_text(ONCALL_MD)
    (folder / "expenses.md").write_text(EXPENSES_MD)
    (folder / "bomb.docx").write_bytes(zip_bomb(unpacked_mb=3))
    (folder / "deep.html").write_bytes(deep_html(2_000))
    (folder / "huge.md").write_bytes(b"# Huge\n" + b"words " * 300_000)
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("ingest", str(folder), collection="kb", sync=True, stdout=out, stderr=io.StringIO())

    documents = {document.source: document for document in Document.objects.all()}
    assert documents["oncall.md"].status == documents["expenses.md"].status == "indexed"
    assert "zip bomb" in documents["bomb.docx"].error
    assert "levels deep" in documents["deep.html"].error
    assert "MAX_UPLOAD_MB" in documents["huge.md"].error
    assert {documents[name].status for name in ("bomb.docx", "deep.html", "huge.md")} == {"failed"}
    assert "Indexed" in out.getvalue()
