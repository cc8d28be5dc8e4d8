"""python manage.py sync [NAME ...] [--sync] [--dry-run] [--allow-prune]"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django_rq
from django.core.management.base import BaseCommand, CommandError
from rq import Worker
from tqdm import tqdm

from console.knowledge import syncing
from console.knowledge.models import Source, Sync


class Command(BaseCommand):
    help = "Sync sources (all, or those named): index new and changed items, prune the ones that are gone."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--sync", action="store_true", help="Sync in this process, without a worker.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be added, updated and deleted; change nothing.",
        )
        parser.add_argument(
            "--allow-prune",
            action="store_true",
            help="Delete documents gone at the source even beyond SYNC_PRUNE_MAX_SHARE or when it lists nothing.",
        )

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        sources = list(Source.objects.filter(name__in=names) if names else Source.objects.all())
        unknown = sorted(set(names) - {source.name for source in sources})
        if unknown:
            raise CommandError(f"No source named {', '.join(unknown)}: see python manage.py add_source.")
        if not sources:
            self.stdout.write("There are no sources yet: add one with python manage.py add_source.")
            return
        failed = []
        for source in sources:
            sync = self._sync(source, options)
            if sync is None:
                continue
            self._summary(source, sync)
            if sync.status == Sync.Status.FAILED:
                failed.append(source.name)
        if failed:
            raise CommandError(f"Sync failed for {', '.join(failed)}.", returncode=1)

    def _sync(self, source: Source, options: dict[str, Any]) -> Sync | None:
        if options["dry_run"]:
            outcome = syncing.sync_source(source.pk, dry_run=True, allow_prune=options["allow_prune"])
            self._plan(source, outcome, allow_prune=options["allow_prune"])
            return outcome.sync
        if options["sync"]:
            with self._bar(source) as show:
                return syncing.sync_source(source.pk, allow_prune=options["allow_prune"], report=show).sync
        if not syncing.enqueue_sync(source, allow_prune=options["allow_prune"]):
            self.stdout.write(f"{source.name}: a sync is already queued or running.")
            return None
        if not Worker.all(queue=django_rq.get_queue("ingest")):
            self.stdout.write(
                f"{source.name}: queued, but no worker listens on queue 'ingest'. Start one with "
                "`python manage.py rqworker ingest`, or re-run with --sync."
            )
            return None
        return self._wait(source)

    def _wait(self, source: Source) -> Sync:
        """Until the worker has finished the source's sync, with the bar following its counts."""
        with self._bar(source) as show:
            while True:
                source.refresh_from_db()
                latest = source.syncs.first()
                if source.status != Source.Status.SYNCING and latest is not None:
                    return latest
                if latest is not None and latest.status == Sync.Status.RUNNING:
                    show(latest)
                time.sleep(1)

    @contextmanager
    def _bar(self, source: Source) -> Iterator[Callable[[Sync], None]]:
        """A progress bar on stderr over the items to fetch, fed with the sync's row as it moves."""
        with tqdm(total=0, unit="item", desc=source.name, file=sys.stderr, leave=False) as bar:

            def show(sync: Sync) -> None:
                if bar.total != sync.to_fetch:
                    bar.reset(total=sync.to_fetch)
                bar.n = sync.done
                bar.set_postfix(added=sync.added, updated=sync.updated, failed=sync.failed, refresh=False)
                bar.refresh()

            yield show

    def _plan(self, source: Source, outcome: syncing.Outcome, *, allow_prune: bool) -> None:
        plan = outcome.plan
        if outcome.sync.status == Sync.Status.FAILED:
            return
        for label, keys in (
            ("add", [item.key for item in plan.new]),
            ("update", [item.key for item, _ in plan.changed]),
            ("delete", [document.item_key for document in plan.gone]),
        ):
            for key in keys:
                self.stdout.write(f"  would {label}: {key}")
        refusal = syncing.prune_refusal(source, plan, allow_prune=allow_prune)
        if refusal:
            self.stdout.write(f"  but nothing would be deleted: {refusal}")

    def _summary(self, source: Source, sync: Sync) -> None:
        counts = f"{sync.listed} listed, "
        if sync.pk is None:  # a dry run
            counts += f"would add {sync.added}, update {sync.updated}, delete {sync.deleted}; {sync.unchanged} unchanged"
        else:
            counts += (
                f"added {sync.added}, updated {sync.updated}, unchanged {sync.unchanged}, "
                f"deleted {sync.deleted}, failed {sync.failed} in {sync.duration or 0:.1f} s"
            )
        style = {Sync.Status.OK: self.style.SUCCESS, Sync.Status.FAILED: self.style.ERROR}.get(
            Sync.Status(sync.status), self.style.WARNING
        )
        self.stdout.write(style(f"{source.name}: {sync.get_status_display()} — {counts}"))
        if sync.error:
            self.stdout.write(f"  {sync.error}")
