"""python manage.py runall — the web console, the RQ workers, RQ's cron scheduler and, when configured, the bots.

All run as child processes under honcho's manager; Ctrl-C stops them all, and then the
embedded PostgreSQL and Redis when those are in use.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand
from honcho.manager import Manager


def process_table(address: str) -> dict[str, str]:
    """Which processes to run, given the configuration."""
    python = sys.executable
    manage = f"{python} {settings.BASE_DIR / 'manage.py'}"
    processes = {
        "web": f"{manage} runserver {address} --noreload",
        # The only processes that load the generator: they answer the chat questions bots queue.
        "answer": f"{manage} rqworker answer --worker-class console.workers.AnswerWorker",
        "ingest": f"{manage} rqworker ingest",
        # RQ's cron scheduler: every minute it queues the check for sources whose sync is due.
        "cron": f"{manage} rqcron console.cron",
        # A fresh interpreter per training job: CUDA must never be initialised before a fork.
        "train": f"{manage} rqworker train --worker-class console.workers.SpawnWorker",
    }
    commands = get_commands()
    if settings.SLACK_BOT_TOKEN and settings.SLACK_APP_TOKEN and "runslackbot" in commands:
        processes["slackbot"] = f"{manage} runslackbot"
    if settings.DISCORD_TOKEN and "rundiscordbot" in commands:
        processes["discordbot"] = f"{manage} rundiscordbot"
    return processes


class Command(BaseCommand):
    help = "Run the console, workers and configured bots together; Ctrl-C stops them all."

    def add_arguments(self, parser):
        parser.add_argument("--address", default="127.0.0.1:8000")

    def handle(self, *args: Any, address: str, **options: Any) -> None:
        call_command("sweep", stdout=self.stdout)  # questions, documents, runs left by the last stop
        manager = Manager()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name, command in process_table(address).items():
            manager.add_process(name, command, env=env, cwd=str(settings.BASE_DIR))
        self.stdout.write(f"Console: http://{address}/admin/  (Ctrl-C stops everything)")
        try:
            manager.loop()
        finally:
            call_command("embedded", "stop", stdout=self.stdout)
        sys.exit(manager.returncode)
