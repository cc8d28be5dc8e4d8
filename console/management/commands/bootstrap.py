"""python manage.py bootstrap — first-run set-up for `make run`.

Creates an admin account when none exists (printing its generated password once) and loads
the demo knowledge base from examples/ when the knowledge base is empty.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from console.knowledge.models import Document

DEMO_COLLECTION = "demo"


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
        if Document.objects.exists() or not demo.is_dir():
            return
        self.stdout.write(f"The knowledge base is empty: loading the demo documents from {demo} …")
        call_command("ingest", str(demo), collection=DEMO_COLLECTION, sync=True, stdout=self.stdout)
