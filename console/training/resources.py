"""Import and export of training pairs through django-import-export: CSV, JSON Lines and XLSX.

Import runs each row through `importing.prepare_row`, the row function of `manage.py import_pairs`
(validation, the row's document, PII scrubbing, the duplicate check): a bad row is reported and
skipped, a duplicate is skipped, the rest is imported. Export scrubs again on the way
out, so a pair stored before scrubbing existed (or edited carelessly) never leaves with PII.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import tablib
from import_export import resources
from import_export.fields import Field
from import_export.formats.base_formats import CSV, XLSX, TextFormat

from console.training.importing import ImportReport, document_finder, prepare_row
from console.training.models import TrainingPair
from ml.pii import scrub

PARSE_ERROR = "_parse_error"  # column JSONLines fills for a line that is not a JSON object


class JSONLines(TextFormat):
    """JSON Lines (one object per line), which tablib lacks.

    A line that is not a JSON object becomes a row carrying only its error, so the resource reports
    it like any other bad row instead of the whole file failing to load.
    """

    CONTENT_TYPE = "application/jsonl"

    @classmethod
    def is_available(cls) -> bool:
        return True

    def get_title(self) -> str:
        return "jsonl"

    def get_extension(self) -> str:
        return "jsonl"

    def can_import(self) -> bool:
        return True

    def can_export(self) -> bool:
        return True

    def create_dataset(self, in_stream: str | bytes, **kwargs: Any) -> tablib.Dataset:
        if isinstance(in_stream, bytes):
            in_stream = in_stream.decode(self.encoding or "utf-8-sig")
        records = []
        for number, line in enumerate(in_stream.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                record = {PARSE_ERROR: f"line {number} is not valid JSON ({err.msg} at column {err.colno})"}
            if not isinstance(record, dict):
                record = {PARSE_ERROR: f"line {number} is not a JSON object"}
            records.append(record)
        headers = list(dict.fromkeys(key for record in records for key in record))
        dataset = tablib.Dataset(headers=headers)
        for record in records:
            dataset.append([record.get(header) for header in headers])
        return dataset

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> str:
        return "".join(
            json.dumps(row, ensure_ascii=False, default=_json_value) + "\n" for row in dataset.dict
        )


def _json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets
# (OWASP's CSV injection list). django-import-export's IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT only
# drops a leading "=" (so "==cmd" or "+cmd" still run) and turns every cell into text, hence our own.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_ESCAPE = "'"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def escape_formula(value: object) -> object:
    """A text cell that a spreadsheet would run, prefixed with a quote so it reads as text.

    Plain numbers ("-1" votes) are no formula and stay as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return FORMULA_ESCAPE + value
    return value


def unescape_formula(value: object) -> object:
    """The text escape_formula wrote, back as it was: an export imports back unchanged.

    A CSV reader may hand an escaped "\r" back as "\n", so that counts as escaped too.
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_ESCAPE)
        and value[1:].startswith((*FORMULA_STARTS, "\n"))
    ):
        return value[1:]
    return value


def _formulae_escaped(dataset: tablib.Dataset) -> tablib.Dataset:
    escaped = tablib.Dataset(headers=dataset.headers, title=dataset.title)
    for row in dataset:
        escaped.append([escape_formula(cell) for cell in row])
    return escaped


class SafeCSV(CSV):
    """CSV whose cells never start a formula in the spreadsheet a curator opens it with."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> str:
        return super().export_data(_formulae_escaped(dataset), **kwargs)


class SafeXLSX(XLSX):
    """XLSX with no formula cells: openpyxl writes any text starting with "=" as a formula."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> bytes:
        return super().export_data(_formulae_escaped(dataset), **kwargs)


FORMATS = [SafeCSV, JSONLines, SafeXLSX]


def _scrubbed_context(context: object) -> list[object]:
    """Exported as stored (whatever keys an item has), with its text scrubbed again."""
    if not isinstance(context, list):
        return []
    return [
        {**chunk, "text": scrub(chunk.get("text", "")).text} if isinstance(chunk, dict) else chunk
        for chunk in context
    ]


class PairExportResource(resources.ModelResource):
    """Pairs as a curator or another tool reads them; text is PII-scrubbed on the way out.

    `structured` (JSON Lines) keeps context a list and numbers and flags native; flat formats (CSV,
    XLSX) get the context as JSON text, which the importer reads back.
    """

    class Meta:
        model = TrainingPair
        name = "Training pairs"
        fields = [
            "id",
            "question",
            "answer",
            "context",
            "source",
            "status",
            "votes",
            "stale",
            "pii_scrubbed",
            "eval_only",
            "reason",
            "created_at",
        ]
        export_order = fields

    def __init__(self, structured: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.structured = structured

    def export_field(self, field, instance, **kwargs):
        if self.structured:
            kwargs["force_native_type"] = True
        return super().export_field(field, instance, **kwargs)

    def dehydrate_question(self, pair: TrainingPair) -> str:
        return scrub(pair.question).text

    def dehydrate_answer(self, pair: TrainingPair) -> str:
        return scrub(pair.answer).text

    def dehydrate_reason(self, pair: TrainingPair) -> str:
        return scrub(pair.reason).text

    def dehydrate_context(self, pair: TrainingPair) -> list[object] | str:
        context = _scrubbed_context(pair.context)
        if self.structured:
            return context
        return json.dumps(context, ensure_ascii=False) if context else ""


@dataclass
class _Verdict:
    kind: str  # "duplicate" or "rejected"
    reason: str


class PairImportResource(resources.ModelResource):
    """django-import-export's side of importing pairs; each row goes through `importing.prepare_row`.

    Rows with `question`, `answer` and optional `context` and `document` become pairs, exactly as
    `import_pairs` makes them. Bad rows and duplicates are skipped with a reason (never an error
    that would stop the import); other columns, such as those of an export, are ignored.
    """

    document = Field(attribute="document_name", column_name="document", readonly=True)

    class Meta:
        model = TrainingPair
        name = "Training pairs"
        fields = ["question", "answer", "context", "document"]
        force_init_instance = True  # every row is a new pair; duplicates are found by their text
        report_skipped = True

    def __init__(self, approve: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.status = TrainingPair.Status.APPROVED if approve else TrainingPair.Status.CANDIDATE
        self.report = ImportReport()
        self.find_document = document_finder()
        self._verdict: _Verdict | None = None

    def before_import_row(self, row, **kwargs):
        self._verdict = None

    def import_instance(self, instance: TrainingPair, row: dict[str, Any], **kwargs: Any) -> None:
        # Not a column: the preview's read-only "document" Field shows it.
        row = {key: unescape_formula(value) for key, value in dict(row).items()}
        instance.document_name = str(row.get("document") or "").strip()  # type: ignore[attr-defined]
        try:
            if row.get(PARSE_ERROR):
                raise ValueError(row[PARSE_ERROR])
            pair = prepare_row(row, self.find_document)
        except ValueError as err:
            self._verdict = _Verdict("rejected", str(err))
            return
        for name, value in pair.fields().items():
            setattr(instance, name, value)
        instance.source = TrainingPair.Source.IMPORT
        instance.status = self.status
        if pair.duplicate:
            self._verdict = _Verdict("duplicate", "the same question and answer are already a pair")

    def skip_row(
        self,
        instance: TrainingPair,
        original: TrainingPair | None,
        row: dict[str, Any],
        import_validation_errors: dict | None = None,
    ) -> bool:
        return self._verdict is not None

    def after_import_row(self, row, row_result, row_number=None, **kwargs):
        verdict = self._verdict
        row_result.verdict = verdict
        if verdict is None:
            self.report.imported += int(row_result.is_new())
        elif verdict.kind == "duplicate":
            self.report.duplicates += 1
        else:
            self.report.rejected.append((row_number, verdict.reason))

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        result.pair_report = self.report
