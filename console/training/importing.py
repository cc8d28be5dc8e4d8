"""Import training pairs from JSONL or CSV: bad rows are reported, never abort the rest."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from console.training.models import TrainingPair
from console.training.pairs import scrubbed_fields

MAX_FIELD_CHARS = 20_000


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


def read_rows(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """(row number, row or None, error) for each record of a .jsonl/.json-lines or .csv file."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield number, None, f"not valid JSON ({err.msg} at column {err.colno})"
                continue
            yield (number, row, "") if isinstance(row, dict) else (number, None, "not a JSON object")
    elif suffix == ".csv":
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
            yield number, row, ""
    else:
        raise ValueError(f"Unsupported file type {suffix or '(none)'}: use .jsonl or .csv.")


def _context(value) -> list[dict]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [{"number": 1, "title": "", "heading": "", "text": value}]
    if isinstance(value, list):
        items = [v if isinstance(v, dict) else {"text": str(v)} for v in value]
        return [
            {
                "number": i,
                "title": v.get("title", ""),
                "heading": v.get("heading", ""),
                "text": v.get("text", ""),
            }
            for i, v in enumerate(items, 1)
        ]
    raise ValueError("context must be text or a list")


def validate(row: dict) -> tuple[str, str, list[dict]]:
    question = str(row.get("question") or "").strip()
    answer = str(row.get("answer") or "").strip()
    if not question:
        raise ValueError("missing question")
    if not answer:
        raise ValueError("missing answer")
    if len(question) > MAX_FIELD_CHARS or len(answer) > MAX_FIELD_CHARS:
        raise ValueError(f"question or answer longer than {MAX_FIELD_CHARS} characters")
    return question, answer, _context(row.get("context"))


def import_pairs(path: Path, *, approve: bool = False) -> ImportReport:
    report = ImportReport()
    status = TrainingPair.Status.APPROVED if approve else TrainingPair.Status.CANDIDATE
    for number, row, error in read_rows(path):
        try:
            if error:
                raise ValueError(error)
            fields = scrubbed_fields(*validate(row))
        except ValueError as err:
            report.rejected.append((number, str(err)))
            continue
        if TrainingPair.objects.filter(question=fields["question"], answer=fields["answer"]).exists():
            report.duplicates += 1
            continue
        TrainingPair.objects.create(**fields, source=TrainingPair.Source.IMPORT, status=status)
        report.imported += 1
    return report
