"""python manage.py embedded status|stop — the embedded PostgreSQL and Redis under DATA_DIR.

Loading the settings starts them, so `status` marks a server this very command started (it
stops again when the command ends, as after any one-off command; see manage.py).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from console import embedded


class Command(BaseCommand):
    help = "Show or stop the embedded PostgreSQL and Redis (used when DATABASE_URL / REDIS_URL are unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "stop"])

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        uses_pg = not os.environ.get("DATABASE_URL")
        uses_redis = not os.environ.get("REDIS_URL")
        if action == "status":
            started = {name for _, name in embedded.started_here()}
            self.stdout.write(f"DATA_DIR:   {settings.DATA_DIR}")
            self.stdout.write(
                f"PostgreSQL: {_describe(uses_pg, 'PostgreSQL' in started)} {settings.DATABASE_URL}"
            )
            self.stdout.write(f"Redis:      {_describe(uses_redis, 'Redis' in started)} {settings.REDIS_URL}")
            return
        from django.db import connections

        connections.close_all()
        if uses_pg and embedded.stop_postgres(settings.DATA_DIR):
            self.stdout.write("Stopped the embedded PostgreSQL.")
        if uses_redis and embedded.stop_redis(settings.DATA_DIR):
            self.stdout.write("Stopped the embedded Redis.")


def _describe(uses_embedded: bool, started_here: bool) -> str:
    if not uses_embedded:
        return "external"
    return "embedded, not running (started for this command only)" if started_here else "embedded, running"
