"""python manage.py runslackbot — the Slack bot over Socket Mode (no public URL needed)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bots.slack.app import build_app


class Command(BaseCommand):
    help = "Run the Slack bot over Socket Mode; needs SLACK_BOT_TOKEN (xoxb-…) and SLACK_APP_TOKEN (xapp-…)."

    def handle(self, *args, **options):
        if not (settings.SLACK_BOT_TOKEN and settings.SLACK_APP_TOKEN):
            raise CommandError(
                "Socket Mode needs SLACK_BOT_TOKEN (OAuth & Permissions) and SLACK_APP_TOKEN "
                "(Basic Information > App-Level Tokens, scope connections:write). "
                "For HTTP mode, leave SLACK_APP_TOKEN unset and point Slack at /slack/events instead."
            )
        app = build_app(socket_mode=True)
        self.stdout.write("Slack bot connected over Socket Mode; Ctrl-C stops it.")
        SocketModeHandler(app, app_token=settings.SLACK_APP_TOKEN).start()
