"""python manage.py sweep — queue again (or fail with a reason) work whose job died or was lost."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from console.sweeping import sweep


class Command(BaseCommand):
    help = (
        "Re-queue chat questions, documents and training runs waiting longer than SWEEP_AFTER_SECONDS "
        "with no live job; questions tried ANSWER_ATTEMPTS times get an apology. Run it every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=int, default=None, help="Seconds (default SWEEP_AFTER_SECONDS)."
        )

    def handle(self, *args: Any, older_than: int | None = None, **options: Any) -> None:
        for kind, counts in sweep(older_than).items():
            self.stdout.write(f"{kind}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
