"""python manage.py embedded status|stop — the embedded PostgreSQL and Redis under DATA_DIR."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from console import embedded


class Command(BaseCommand):
    help = "Show or stop the embedded PostgreSQL and Redis (used when DATABASE_URL / REDIS_URL are unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "stop"])

    def handle(self, *args, action: str, **options):
        uses_pg = not os.environ.get("DATABASE_URL")
        uses_redis = not os.environ.get("REDIS_URL")
        if action == "status":
            self.stdout.write(f"DATA_DIR:   {settings.DATA_DIR}")
            self.stdout.write(f"PostgreSQL: {'embedded' if uses_pg else 'external'} {settings.DATABASE_URL}")
            self.stdout.write(f"Redis:      {'embedded' if uses_redis else 'external'} {settings.REDIS_URL}")
            return
        from django.db import connections

        connections.close_all()
        if uses_pg and embedded.stop_postgres(settings.DATA_DIR):
            self.stdout.write("Stopped the embedded PostgreSQL.")
        if uses_redis and embedded.stop_redis(settings.DATA_DIR):
            self.stdout.write("Stopped the embedded Redis.")
