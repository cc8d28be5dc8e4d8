"""python manage.py bootstrap — first-run set-up for `make run`.

Creates an admin account when none exists (printing its generated password once) and loads
the demo knowledge base from examples/ when the knowledge base is empty, as a folder source, so
the admin shows a source with its schedule and sync history from the first minute.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from console.knowledge import syncing
from console.knowledge.models import Collection, Document, Source

DEMO_COLLECTION = "demo"
DEMO_SOURCE = "demo-handbook"


class Command(BaseCommand):
    help = "Create the first admin account and load the demo knowledge base when empty."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Do not load the demo knowledge base.")

    def handle(self, *args, **options):
        self._ensure_admin()
        if not options["no_demo"]:
            self._load_demo()

    def _ensure_admin(self) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "", password)
        banner = "=" * 64
        self.stdout.write(self.style.SUCCESS(banner))
        self.stdout.write(self.style.SUCCESS("Created the admin account. It is shown once; keep it safe:"))
        self.stdout.write(self.style.SUCCESS("  user:     admin"))
        self.stdout.write(self.style.SUCCESS(f"  password: {password}"))
        self.stdout.write(
            self.style.SUCCESS("Change it in the admin, or: python manage.py changepassword admin")
        )
        self.stdout.write(self.style.SUCCESS(banner))

    def _load_demo(self) -> None:
        demo = settings.BASE_DIR / "examples" / "knowledge"
        if Document.objects.exists() or Source.objects.exists() or not demo.is_dir():
            return
        self.stdout.write(
            f"The knowledge base is empty: adding the demo documents in {demo} as a folder source …"
        )
        collection, _ = Collection.objects.get_or_create(
            slug=DEMO_COLLECTION, defaults={"name": DEMO_COLLECTION}
        )
        source = Source(
            name=DEMO_SOURCE, kind=Source.Kind.FOLDER, collection=collection, options={"path": str(demo)}
        )
        try:
            source.full_clean()
        except ValidationError as err:
            self.stdout.write(f"The demo source was not added: {' '.join(err.messages)}")
            return
        source.save()
        sync = syncing.sync_source(source.pk).sync
        self.stdout.write(
            f"Synced {DEMO_SOURCE}: {sync.added} documents added ({sync.get_status_display()}). It syncs again "
            f"on its schedule ({source.schedule}); see Knowledge › Sources in the admin."
        )
