"""Import training pairs from JSONL or CSV: bad rows are reported, never abort the rest.

`prepare_row` is the one row function: `manage.py import_pairs` (here) and the admin's import
(`resources.PairImportResource`) both run it, so a file gives the same pairs by either door.

A row's optional `document` (a knowledge-base document's source file name or title) titles its
context, as retrieval would, and ties the pair to that document so it goes stale when the
document changes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from console.knowledge.models import Document
from console.training.models import TrainingPair
from console.training.pairs import scrubbed_fields
from ml.prompting import ContextChunk, ContextItem, context_chunks, context_items

MAX_FIELD_CHARS = 20_000
FindDocument = Callable[[str], Document | None]


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


def _decoded_context(value):
    """A flat file carries context as JSON text (our own export) or plain text; JSON Lines as a list."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def _context(value: object) -> list[ContextItem]:
    value = _decoded_context(value)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return context_items([ContextChunk(title="", text=value)])
    if isinstance(value, list):
        return context_items(context_chunks(value))
    raise ValueError("context must be text or a list")


def validate(row: dict) -> tuple[str, str, list[ContextItem]]:
    question = str(row.get("question") or "").strip()
    answer = str(row.get("answer") or "").strip()
    if not question:
        raise ValueError("missing question")
    if not answer:
        raise ValueError("missing answer")
    if len(question) > MAX_FIELD_CHARS or len(answer) > MAX_FIELD_CHARS:
        raise ValueError(f"question or answer longer than {MAX_FIELD_CHARS} characters")
    return question, answer, _context(row.get("context"))


def _find_document(name: str) -> Document | None:
    """The knowledge-base document whose source file name, or else title, is `name`."""
    return (
        Document.objects.filter(source=name).order_by("pk").first()
        or Document.objects.filter(title=name).order_by("pk").first()
    )


def document_finder() -> FindDocument:
    """A document look-up for one import: many rows name the same few documents."""
    return functools.cache(_find_document)


def _with_document(
    context: list[ContextItem], name: str, find: FindDocument
) -> tuple[list[ContextItem], list[dict]]:
    """The context with untitled items titled after the row's document, and the pair's documents."""
    document = find(name) if name else None
    title = document.title if document else name
    titled: list[ContextItem] = [{**item, "title": item["title"] or title} for item in context]
    linked = [{"document_id": document.pk, "version": document.version}] if document else []
    return titled, linked


@dataclass(frozen=True)
class PreparedPair:
    """A row ready to become a pair; `duplicate` when its question and answer already are one."""

    question: str
    answer: str
    context: list[ContextItem]
    documents: list[dict]  # [{"document_id", "version"}]: the pair goes stale when one changes
    pii_scrubbed: bool
    duplicate: bool

    def fields(self) -> dict:
        """The TrainingPair fields this row sets."""
        return {
            "question": self.question,
            "answer": self.answer,
            "context": self.context,
            "documents": self.documents,
            "pii_scrubbed": self.pii_scrubbed,
        }


def prepare_row(row: dict, find_document: FindDocument) -> PreparedPair:
    """Validate, link the `document`, scrub, check for a duplicate: what every import runs on a row.

    Raises ValueError with the reason to reject the row. `find_document` is `document_finder()`.
    """
    question, answer, context = validate(row)
    context, documents = _with_document(context, str(row.get("document") or "").strip(), find_document)
    fields = scrubbed_fields(question, answer, context)
    duplicate = TrainingPair.objects.filter(question=fields["question"], answer=fields["answer"]).exists()
    return PreparedPair(**fields, documents=documents, duplicate=duplicate)


def import_pairs(path: Path, *, approve: bool = False) -> ImportReport:
    report = ImportReport()
    status = TrainingPair.Status.APPROVED if approve else TrainingPair.Status.CANDIDATE
    find_document = document_finder()
    for number, row, error in read_rows(path):
        try:
            if row is None:
                raise ValueError(error)
            pair = prepare_row(row, find_document)
        except ValueError as err:
            report.rejected.append((number, str(err)))
            continue
        if pair.duplicate:
            report.duplicates += 1
            continue
        TrainingPair.objects.create(**pair.fields(), source=TrainingPair.Source.IMPORT, status=status)
        report.imported += 1
    return report
