"""python manage.py add_source NAME KIND --collection SLUG [--option KEY=VALUE ...] [--schedule CRON]"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from console.knowledge.models import DEFAULT_SCHEDULE, Collection, Source


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a key given twice collects a list (--option channels=C1 --option channels=C2)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--option takes KEY=VALUE, not {pair!r}.")
        key = key.strip()
        if key in options:
            before = options[key]
            options[key] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            options[key] = value
    return options


class Command(BaseCommand):
    help = "Create or update a source (where a collection's documents come from) and its schedule."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("kind", choices=Source.Kind.values)
        parser.add_argument("--collection", required=True, help="Collection slug (created if missing).")
        parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument(
            "--schedule", help=f"Cron schedule in UTC (default for a new source: {DEFAULT_SCHEDULE!r})."
        )
        parser.add_argument("--disabled", action="store_true", help="No scheduled syncs (sync by hand only).")

    def handle(
        self, *args: Any, name: str, kind: str, collection: str, option: list[str], **opts: Any
    ) -> None:
        source = Source.objects.filter(name=name).first() or Source(name=name)
        created = source.pk is None
        source.kind = kind
        source.options = parse_options(option)
        if opts["schedule"]:
            source.schedule = opts["schedule"]
        source.enabled = not opts["disabled"]
        target = Collection.objects.filter(slug=collection).first() or Collection(
            slug=collection, name=collection
        )
        try:
            target.full_clean(exclude=["allowed_scopes"])
            source.collection = target
            source.full_clean(exclude=["collection"])
        except ValidationError as err:
            raise CommandError(_message(err)) from err
        if target.pk is None:
            target.save()
        source.collection = target
        # Cleared errors and schedule: the next minute's check syncs it (never synced, or re-set).
        source.last_error, source.next_sync_at = "", None
        if source.status in (Source.Status.FAILED, Source.Status.FLAGGED):
            source.status = Source.Status.NEW if source.last_synced_at is None else Source.Status.OK
        source.save()
        self.stdout.write(
            f"{'Created' if created else 'Updated'} source {source.name!r} ({source.get_kind_display()}) "
            f"for collection {target.slug!r}, schedule {source.schedule!r}. It syncs within a minute when "
            f"`rq cron` runs (make run starts it), or now: python manage.py sync {source.name} --sync"
        )


def _message(err: ValidationError) -> str:
    if hasattr(err, "message_dict"):
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in err.message_dict.items())
    return " ".join(err.messages)
