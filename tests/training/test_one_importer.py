"""The admin's import and `manage.py import_pairs` run the same row function: same file, same pairs."""

import csv
import io
import json

import pytest

from console.training.importing import ImportReport, import_pairs
from console.training.models import TrainingPair
from console.training.resources import FORMATS, JSONLines
from tests.knowledge.conftest import ONCALL_MD
from tests.training.test_curation_admin import _import

pytestmark = pytest.mark.django_db

CONTEXT = [{"title": "", "heading": "Paging", "text": "Acknowledge within 5 minutes."}]
ROWS = [
    {  # names the document by its source file name; context as a list (JSON text in a CSV)
        "question": "How fast must a page be acknowledged?",
        "answer": "Within 5 minutes.",
        "context": CONTEXT,
        "document": "oncall.md",
    },
    {  # by the document's title, with plain-text context and PII to scrub
        "question": "Who runs the handover?",
        "answer": "Mail dana.smith@example.com before Monday.",
        "context": "Handover happens every Monday.",
        "document": "On-call rotation",
    },
    {"question": "Is this one known?", "answer": "Yes, it is already a pair."},  # a duplicate
    {"question": "Where is the answer?", "answer": ""},  # a bad row
    {"question": "How fast must a page be acknowledged?", "answer": "Within 5 minutes."},  # in-file dup
    {"question": "Is the wiki indexed?", "answer": "No.", "context": "Not yet.", "document": "Wiki"},
]


def as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["question", "answer", "context", "document"])
    writer.writeheader()
    for row in rows:
        context = row.get("context", "")
        writer.writerow({**row, "context": json.dumps(context) if isinstance(context, list) else context})
    return out.getvalue()


def imported_pairs() -> list[tuple]:
    pairs = TrainingPair.objects.filter(source=TrainingPair.Source.IMPORT).order_by("pk")
    return [(p.question, p.answer, p.context, p.documents, p.pii_scrubbed, p.status) for p in pairs]


@pytest.mark.parametrize(
    ("suffix", "write", "file_format", "header_lines"),
    [("jsonl", as_jsonl, JSONLines, 0), ("csv", as_csv, FORMATS[0], 1)],
)
def test_the_admin_and_import_pairs_make_the_same_pairs_from_the_same_file(
    admin_client, tmp_path, collection, add_document, suffix, write, file_format, header_lines
):
    oncall = add_document(collection, "oncall.md", ONCALL_MD)
    TrainingPair.objects.create(
        question="Is this one known?", answer="Yes, it is already a pair.", source="manual"
    )
    content = write(ROWS)

    preview, final = _import(admin_client, f"pairs.{suffix}", content, file_format, approve=True)
    by_admin, admin_report = imported_pairs(), preview.context["result"].pair_report
    TrainingPair.objects.filter(source=TrainingPair.Source.IMPORT).delete()
    path = tmp_path / f"pairs.{suffix}"
    path.write_text(content)
    cli_report = import_pairs(path, approve=True)
    by_command = imported_pairs()

    linked = [{"document_id": oncall.pk, "version": oncall.version}]
    assert (
        by_admin
        == by_command
        == [
            (
                ROWS[0]["question"],
                ROWS[0]["answer"],
                [{"number": 1, "title": "On-call rotation", "heading": "Paging", "text": CONTEXT[0]["text"]}],
                linked,
                False,
                "approved",
            ),
            (
                ROWS[1]["question"],
                "Mail [EMAIL] before Monday.",
                [{"number": 1, "title": "On-call rotation", "heading": "", "text": ROWS[1]["context"]}],
                linked,
                True,
                "approved",
            ),
            (
                "Is the wiki indexed?",
                "No.",
                [{"number": 1, "title": "Wiki", "heading": "", "text": "Not yet."}],
                [],
                False,
                "approved",
            ),
        ]
    )
    # A CSV's rows are numbered by the command from the file's first line (the header) and by the
    # admin from the first record, as each door always has; everything else is the same report.
    assert cli_report == ImportReport(
        imported=3, duplicates=2, rejected=[(4 + header_lines, "missing answer")]
    )
    assert admin_report == ImportReport(
        cli_report.imported,
        cli_report.duplicates,
        [(number - header_lines, reason) for number, reason in cli_report.rejected],
    )
    messages = [str(message) for message in final.context["messages"]]
    assert messages[0] == "Imported 3 pair(s), skipped 2 duplicate(s), rejected 1."
    assert "record 4: missing answer" in messages[1]
