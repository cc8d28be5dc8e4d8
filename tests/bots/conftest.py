"""Fakes of the chat platforms' servers shared by the bots' tests."""

from __future__ import annotations

import discord
import pytest

from tests.bots.discord_fake import TOKEN, FakeDiscord


@pytest.fixture
def fake_discord(settings, monkeypatch):
    """FakeDiscord for both sides: the gateway's discord.py routes and the answer worker's
    DISCORD_API_URL, with the bot token both use."""
    fake = FakeDiscord()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.url)
    settings.DISCORD_API_URL = fake.url
    settings.DISCORD_TOKEN = TOKEN
    yield fake
    fake.close()
