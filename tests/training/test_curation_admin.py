import csv
import io
import json

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.training.admin.pairs import TrainingPairAdmin
from console.training.models import TrainingPair
from console.training.resources import FORMATS, JSONLines, PairExportResource

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:training_trainingpair_changelist"
EMAIL = "dana.smith@example.com"


def make_pair(question="How do I reset my password?", answer="Use the self-service portal.", **fields):
    """A pair stored as given: no scrubbing, as if it predates the scrubber or was written directly."""
    fields.setdefault("source", TrainingPair.Source.FEEDBACK)
    return TrainingPair.objects.create(question=question, answer=answer, **fields)


def listed(admin_client, **params) -> set[int]:
    response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {pair.pk for pair in response.context["cl"].result_list}


def act(admin_client, action, *pairs):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [p.pk for p in pairs]},
        follow=True,
    )


def test_filters_narrow_the_list_by_status_source_votes_stale_and_eval_only(admin_client):
    candidate = make_pair(votes=0)
    approved = make_pair(status="approved", votes=1, source="import")
    popular = make_pair(votes=3, stale=True)
    held_out = make_pair(status="approved", votes=2, eval_only=True, source="manual")

    assert listed(admin_client, status__exact="approved") == {approved.pk, held_out.pk}
    assert listed(admin_client, source__exact="import") == {approved.pk}
    assert listed(admin_client, votes="0") == {candidate.pk}
    assert listed(admin_client, votes="1") == {approved.pk}
    assert listed(admin_client, votes="2+") == {popular.pk, held_out.pk}
    assert listed(admin_client, stale__exact="1") == {popular.pk}
    assert listed(admin_client, eval_only__exact="1") == {held_out.pk}


def test_search_finds_pairs_by_question_or_answer(admin_client):
    vpn = make_pair("How do I get on the VPN?", "Install WireGuard from the portal.")
    make_pair("Where is the office?", "Second floor.")
    assert listed(admin_client, q="vpn") == {vpn.pk}
    assert listed(admin_client, q="wireguard") == {vpn.pk}


def test_bulk_approve_and_reject_change_status(admin_client):
    a, b, c = make_pair(), make_pair(), make_pair()
    act(admin_client, "approve", a, b)
    act(admin_client, "reject", c)
    assert dict(TrainingPair.objects.values_list("pk", "status")) == {
        a.pk: "approved",
        b.pk: "approved",
        c.pk: "rejected",
    }


def test_re_approving_a_stale_pair_clears_stale(admin_client):
    pair = make_pair(status="approved", stale=True)
    act(admin_client, "approve", pair)
    pair.refresh_from_db()
    assert (pair.status, pair.stale) == ("approved", False)


def test_clear_stale_and_eval_only_actions_keep_status(admin_client):
    pair = make_pair(status="candidate", stale=True)
    act(admin_client, "clear_stale", pair)
    act(admin_client, "mark_eval_only", pair)
    pair.refresh_from_db()
    assert (pair.status, pair.stale, pair.eval_only) == ("candidate", False, True)


def test_editing_the_answer_scrubs_it_and_approving_clears_stale(admin_client):
    pair = make_pair(stale=True)
    url = reverse("admin:training_trainingpair_change", args=[pair.pk])
    response = admin_client.post(
        url,
        {
            "question": pair.question,
            "answer": f"Ask {EMAIL} to reset it.",
            "status": "approved",
            "reason": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    pair.refresh_from_db()
    assert pair.answer == "Ask [EMAIL] to reset it."
    assert (pair.status, pair.stale, pair.pii_scrubbed) == ("approved", False, True)


def test_status_is_editable_in_the_list(admin_client):
    pair = make_pair(stale=True)
    admin_client.post(
        reverse(CHANGELIST),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(pair.pk),
            "form-0-status": "approved",
            "_save": "Save",
        },
    )
    pair.refresh_from_db()
    assert (pair.status, pair.stale) == ("approved", False)


def _export(admin_client, format_class, **filters) -> bytes:
    index = FORMATS.index(format_class)
    prefix = PairExportResource.__name__.lower()
    data = {"format": str(index), "resource": "0"}
    data |= {f"{prefix}_{name}": "on" for name in PairExportResource().get_export_order()}
    url = reverse("admin:training_trainingpair_export")
    if filters:
        url += "?" + "&".join(f"{k}={v}" for k, v in filters.items())
    response = admin_client.post(url, data)
    assert response.status_code == 200, response.content[:500]
    assert "attachment" in response["Content-Disposition"]
    return response.content


@pytest.fixture
def pairs_with_pii():
    """Stored without scrubbing, so only the export can have removed the e-mail address."""
    context = [{"number": 1, "title": "Handbook", "heading": "Access", "text": f"Write to {EMAIL}."}]
    return [
        make_pair(f"Who do I mail? I am {EMAIL}", f"Mail {EMAIL}.", context=context, status="approved"),
        make_pair("Where is the VPN guide?", "In the handbook.", votes=2),
    ]


def test_export_csv_contains_the_pairs_with_pii_scrubbed(admin_client, pairs_with_pii):
    content = _export(admin_client, FORMATS[0]).decode()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert EMAIL not in content
    by_id = {int(row["id"]): row for row in rows}
    first = by_id[pairs_with_pii[0].pk]
    assert first["question"] == "Who do I mail? I am [EMAIL]"
    assert first["answer"] == "Mail [EMAIL]."
    assert json.loads(first["context"])[0]["text"] == "Write to [EMAIL]."
    assert by_id[pairs_with_pii[1].pk]["votes"] == "2"


def test_export_jsonl_keeps_context_structured_and_scrubbed(admin_client, pairs_with_pii):
    content = _export(admin_client, JSONLines).decode()
    assert EMAIL not in content
    records = {r["id"]: r for r in map(json.loads, content.splitlines())}
    first = records[pairs_with_pii[0].pk]
    assert first["answer"] == "Mail [EMAIL]."
    assert first["context"] == [
        {"number": 1, "title": "Handbook", "heading": "Access", "text": "Write to [EMAIL]."}
    ]
    assert records[pairs_with_pii[1].pk]["votes"] == 2
    assert records[pairs_with_pii[1].pk]["stale"] is False


def test_export_xlsx_contains_the_pairs_with_pii_scrubbed(admin_client, pairs_with_pii):
    xlsx_format = FORMATS[2]
    book = openpyxl.load_workbook(io.BytesIO(_export(admin_client, xlsx_format)))
    rows = list(book.active.values)
    header, body = rows[0], rows[1:]
    cells = [str(value) for row in body for value in row]
    assert header[:3] == ("id", "question", "answer")
    assert len(body) == 2
    assert not any(EMAIL in cell for cell in cells)
    assert "Mail [EMAIL]." in cells


def test_export_follows_the_list_filters(admin_client, pairs_with_pii):
    content = _export(admin_client, JSONLines, status__exact="approved").decode()
    assert [json.loads(line)["id"] for line in content.splitlines()] == [pairs_with_pii[0].pk]


def _preview(admin_client, name: str, content: str | bytes, format_class, approve=False):
    """Upload a file: a dry run whose page previews the rows and offers to confirm."""
    upload = SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content)
    data = {"import_file": upload, "format": str(FORMATS.index(format_class)), "resource": "0"}
    if approve:
        data["approve"] = "on"
    preview = admin_client.post(reverse("admin:training_trainingpair_import"), data)
    assert preview.status_code == 200
    assert preview.context["confirm_form"] is not None, preview.content.decode()[-3000:]
    return preview


def _confirm(admin_client, preview):
    confirm = preview.context["confirm_form"]
    return admin_client.post(
        reverse("admin:training_trainingpair_process_import"),
        {name: confirm.initial.get(name, "") for name in confirm.fields},
        follow=True,
    )


def _import(admin_client, name: str, content: str | bytes, format_class, approve=False):
    preview = _preview(admin_client, name, content, format_class, approve)
    return preview, _confirm(admin_client, preview)


def test_jsonl_import_creates_scrubbed_pairs_and_reports_bad_rows(admin_client):
    make_pair("Already here?", "Yes.")
    lines = [
        json.dumps(
            {"question": "How do I get VPN access?", "answer": f"Ask {EMAIL}.", "context": "VPN page"}
        ),
        json.dumps({"question": "No answer here"}),
        "{not json",
        json.dumps({"question": "Already here?", "answer": "Yes."}),
        json.dumps(
            {"question": "Where are the docs?", "answer": "In the wiki.", "context": [{"text": "Wiki"}]}
        ),
    ]
    preview = _preview(admin_client, "pairs.jsonl", "\n".join(lines), JSONLines, approve=True)
    shown = preview.content.decode()
    assert "Record 2: missing answer" in shown
    assert "Record 3: line 3 is not valid JSON" in shown
    assert not TrainingPair.objects.filter(source="import").exists()  # the preview is a dry run

    final = _confirm(admin_client, preview)

    imported = TrainingPair.objects.filter(source="import").order_by("pk")
    assert [p.question for p in imported] == ["How do I get VPN access?", "Where are the docs?"]
    assert imported[0].answer == "Ask [EMAIL]." and imported[0].pii_scrubbed
    assert imported[0].context == [{"number": 1, "title": "", "heading": "", "text": "VPN page"}]
    assert {p.status for p in imported} == {"approved"}
    text = final.content.decode()
    assert "Imported 2 pair(s), skipped 1 duplicate(s), rejected 2." in text
    assert "record 2: missing answer" in text


def test_csv_import_creates_candidates_and_reports_a_bad_row(admin_client):
    content = (
        "question,answer,context\n"
        "How do I book a room?,Use the calendar.,\n"
        ",An answer without a question.,\n"
        'How do I expense travel?,File it in Expensify.,"[{""title"": ""Policy"", ""text"": ""Travel""}]"\n'
    )
    preview, final = _import(admin_client, "pairs.csv", content, FORMATS[0])
    assert "Record 2: missing question" in preview.content.decode()
    imported = {p.question: p for p in TrainingPair.objects.filter(source="import")}
    assert set(imported) == {"How do I book a room?", "How do I expense travel?"}
    assert {p.status for p in imported.values()} == {"candidate"}
    assert imported["How do I expense travel?"].context[0]["title"] == "Policy"
    assert "rejected 1" in final.content.decode()


def test_exported_csv_imports_back_as_duplicates(admin_client, pairs_with_pii):
    TrainingPair.objects.all().delete()
    make_pair("Where is the VPN guide?", "In the handbook.")
    exported = _export(admin_client, FORMATS[0]).decode()
    _, final = _import(admin_client, "export.csv", exported, FORMATS[0])
    assert "Imported 0 pair(s), skipped 1 duplicate(s), rejected 0." in final.content.decode()


def test_an_xlsx_export_imports_back_with_its_context(admin_client, pairs_with_pii):
    exported = _export(admin_client, FORMATS[2])
    TrainingPair.objects.all().delete()
    _, final = _import(admin_client, "export.xlsx", exported, FORMATS[2])
    assert "Imported 2 pair(s), skipped 0 duplicate(s), rejected 0." in final.content.decode()
    mailed = TrainingPair.objects.get(answer="Mail [EMAIL].")
    assert mailed.context[0] == {
        "number": 1,
        "title": "Handbook",
        "heading": "Access",
        "text": "Write to [EMAIL].",
    }


def test_dataset_size_counts_trainable_pairs_and_estimated_tokens(admin_client):
    context = [{"number": 1, "title": "T", "heading": "H", "text": "five words of context here"}]
    make_pair("one two three", "four five", status="approved", context=context)  # 10 words
    make_pair("a b", "c d e", status="approved")  # 5 words
    make_pair("stale pair", "not counted", status="approved", stale=True)
    make_pair("held out", "not counted", status="approved", eval_only=True)
    make_pair("candidate", "not counted")
    make_pair("rejected", "not counted", status="rejected")

    response = admin_client.get(reverse(CHANGELIST))
    size = response.context["dataset"]
    assert size.pairs == 2
    assert size.tokens == round(15 * 1.3)
    assert dict(size.by_status) == {"Candidate": 1, "Approved": 4, "Rejected": 1}
    assert (size.stale, size.eval_only) == (1, 1)
    page = response.content.decode()
    assert '<span id="dataset-pairs">2</span> pairs' in page
    assert "≈ 20" in page


def test_the_admin_offers_csv_jsonl_and_xlsx():
    assert [f().get_extension() for f in TrainingPairAdmin.formats] == ["csv", "jsonl", "xlsx"]
