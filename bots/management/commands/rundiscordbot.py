"""python manage.py rundiscordbot — answer questions on Discord over the gateway (needs DISCORD_TOKEN)."""

from __future__ import annotations

import asyncio

import discord
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bots.discord.bot import serve

PORTAL = "https://discord.com/developers/applications"


class Command(BaseCommand):
    help = "Run the Discord bot: /ask, !ask and @mentions, with 👍/👎 feedback. Needs DISCORD_TOKEN."

    def handle(self, *args, **options):
        if not settings.DISCORD_TOKEN:
            raise CommandError(
                "DISCORD_TOKEN is not set. Create a bot at " + PORTAL + " (Bot → Reset Token), "
                "put the token in .env as DISCORD_TOKEN=..., and run this again. "
                "README.md, 'Add it to Slack and Discord', has every step."
            )
        self.stdout.write("Discord bot starting (Ctrl-C stops it)")
        try:
            asyncio.run(serve(settings.DISCORD_TOKEN))
        except discord.LoginFailure as error:
            raise CommandError(
                "Discord rejected DISCORD_TOKEN. Reset the token at " + PORTAL + " (your application → Bot → "
                "Reset Token) and update DISCORD_TOKEN."
            ) from error
        except discord.PrivilegedIntentsRequired as error:
            raise CommandError(
                "The bot needs the Message Content intent to read !ask and mentions: at " + PORTAL + ", open "
                "your application → Bot → Privileged Gateway Intents and switch on Message Content Intent."
            ) from error
        except KeyboardInterrupt:
            self.stdout.write("Discord bot stopped")
