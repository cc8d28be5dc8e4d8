"""python manage.py import_pairs FILE [--approve]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from console.training.importing import import_pairs


class Command(BaseCommand):
    help = "Import training pairs (question, answer, optional context and document) from JSONL or CSV."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--approve", action="store_true", help="Approve imported pairs (default: candidates)."
        )

    def handle(self, *args: Any, file: Path, approve: bool, **options: Any) -> None:
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        try:
            report = import_pairs(file, approve=approve)
        except (ValueError, UnicodeDecodeError) as err:
            raise CommandError(str(err)) from err
        state = "approved" if approve else "candidates"
        self.stdout.write(
            f"Imported {report.imported} ({state}), skipped {report.duplicates} duplicates, "
            f"rejected {len(report.rejected)}."
        )
        for number, reason in report.rejected:
            self.stdout.write(self.style.WARNING(f"  row {number}: {reason}"))
