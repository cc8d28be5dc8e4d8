import io
import json

import pytest
from django.core.management import CommandError, call_command

from console.knowledge.models import Document
from tests.knowledge.conftest import EXPENSES_MD, ONCALL_MD, VPN_TXT

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "handbook"
    (root / "ops").mkdir(parents=True)
    (root / "ops" / "oncall.md").write_text(ONCALL_MD)
    (root / "expenses.md").write_text(EXPENSES_MD)
    (root / "vpn.txt").write_text(VPN_TXT)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / ".hidden.md").write_text("# hidden")
    return root


def _ingest(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command("ingest", *map(str, args), stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def test_ingest_folder_recursively_and_report(folder, capsys):
    output = _ingest(folder, collection="handbook", sync=True)
    assert "Indexed 3, skipped 0 unchanged, failed 0." in output
    bar = capsys.readouterr().err  # the bar moves while a batch's chunks embed, then per document
    assert "embedding" in bar and "chunks" in bar and "3/3" in bar
    assert "ops/oncall.md" in output
    assert ".png ×1" in output
    assert set(Document.objects.values_list("source", flat=True)) == {
        "ops/oncall.md",
        "expenses.md",
        "vpn.txt",
    }
    again = _ingest(folder, collection="handbook", sync=True)
    assert "Indexed 0, skipped 3 unchanged, failed 0." in again


def test_ingest_exits_non_zero_and_names_the_reason_when_a_file_fails(folder):
    (folder / "broken.txt").write_bytes(b"\xff\xfe\x00\x00binary\x00")
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(
            "ingest", str(folder), collection="handbook", sync=True, stdout=out, stderr=io.StringIO()
        )
    assert failure.value.returncode == 1
    assert "failed 1" in out.getvalue()
    assert "broken.txt:" in out.getvalue()
    assert Document.objects.filter(status="indexed").count() == 3


def test_ingest_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="No such file or folder"):
        _ingest(tmp_path / "nope", collection="handbook", sync=True)


def test_ingest_without_sync_queues_jobs_and_says_no_worker_listens(
    folder, ingest_queue, run_ingest_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        output = _ingest(folder, collection="handbook")
    assert "Queued 3 document(s)" in output and "no worker listens on queue 'ingest'" in output
    assert ingest_queue.count == 1  # the three small files are one batch
    run_ingest_worker()
    assert Document.objects.filter(status="indexed").count() == 3


def test_search_json_prints_document_source_text_and_score(folder):
    _ingest(folder, collection="handbook", sync=True)
    out = io.StringIO()
    call_command("search", "meals reimbursed per day", k=2, json=True, stdout=out)
    results = json.loads(out.getvalue())
    assert 1 <= len(results) <= 2
    assert {"document", "source", "text", "score"} <= set(results[0])
    assert results[0]["source"] == "expenses.md"
    assert results[0]["document"] == "Expense policy"
    assert "60 euros" in results[0]["text"]


def test_search_plain_output_and_unknown_collection(folder):
    _ingest(folder, collection="handbook", sync=True)
    out = io.StringIO()
    call_command("search", "PagerDuty acknowledge", collection="handbook", stdout=out)
    assert "1. On-call rotation" in out.getvalue()
    with pytest.raises(CommandError, match="No collection"):
        call_command("search", "x", collection="missing", stdout=io.StringIO())
