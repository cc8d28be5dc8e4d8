import io
import json

import pytest
from django.core.management import CommandError, call_command

from console.training.models import TrainingPair

pytestmark = pytest.mark.django_db


def _run(path, *args) -> str:
    out = io.StringIO()
    call_command("import_pairs", str(path), *args, stdout=out)
    return out.getvalue()


def test_jsonl_import_reports_imported_duplicates_and_rejected_rows(tmp_path):
    rows = [
        {
            "question": "How long is the canary?",
            "answer": "15 minutes at 10%.",
            "context": "Canary: 10% for 15 minutes.",
        },
        {"question": "How long is the canary?", "answer": "15 minutes at 10%."},
        {"question": "", "answer": "orphan"},
        {
            "question": "Who approves monitors?",
            "answer": "Your manager, above 400 euros. Mail boss@example.com",
        },
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n[1, 2]\n")
    output = _run(path)
    assert "Imported 2 (candidates), skipped 1 duplicates, rejected 3." in output
    assert (
        "row 3: missing question" in output
        and "row 5: not valid JSON" in output
        and "row 6: not a JSON object" in output
    )
    pairs = TrainingPair.objects.order_by("pk")
    assert [p.status for p in pairs] == ["candidate", "candidate"]
    assert pairs[0].context[0]["text"] == "Canary: 10% for 15 minutes." and pairs[0].source == "import"
    assert "[EMAIL]" in pairs[1].answer and pairs[1].pii_scrubbed


def test_csv_import_with_approve(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('question,answer\n"What is SEV1?","A full outage."\n"No answer",\n')
    output = _run(path, "--approve")
    assert "Imported 1 (approved), skipped 0 duplicates, rejected 1." in output
    assert "row 3: missing answer" in output
    assert TrainingPair.objects.get().status == "approved"


def test_unsupported_file_type_is_a_clear_error(tmp_path):
    path = tmp_path / "pairs.xml"
    path.write_text("<pairs/>")
    with pytest.raises(CommandError, match="Unsupported file type .xml"):
        _run(path)


def test_a_rows_document_titles_its_context_and_ties_the_pair_to_it(tmp_path, collection, add_document):
    from tests.knowledge.conftest import ONCALL_MD

    oncall = add_document(collection, "oncall.md", ONCALL_MD)
    rows = [
        {
            "question": "Who is paged?",
            "answer": "Primary.",
            "context": "Primary is paged.",
            "document": "oncall.md",
        },
        {
            "question": "Who else?",
            "answer": "Secondary.",
            "context": "Then secondary.",
            "document": oncall.title,
        },
        {
            "question": "And the wiki?",
            "answer": "wiki.test",
            "context": "It is wiki.test.",
            "document": "Wiki",
        },
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "Imported 3" in _run(path, "--approve")

    by_source, by_title, unknown = TrainingPair.objects.order_by("pk")
    for pair in (by_source, by_title):
        assert pair.context[0]["title"] == "On-call rotation"
        assert pair.documents == [{"document_id": oncall.pk, "version": 1}]
    assert unknown.context[0]["title"] == "Wiki" and unknown.documents == []

    add_document(collection, "oncall.md", ONCALL_MD + "\nA new rule.\n")  # version 2
    assert set(TrainingPair.objects.filter(stale=True)) == {by_source, by_title}
