"""POST /slack/events: Slack's Events API, slash commands and interactivity in HTTP mode."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_bolt.adapter.django import SlackRequestHandler

from bots.slack.app import build_app

NOT_CONFIGURED = "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, then restart."


@lru_cache(maxsize=1)
def _handler(token: str, signing_secret: str, api_url: str) -> SlackRequestHandler:
    return SlackRequestHandler(build_app())


@csrf_exempt
@require_POST
def slack_events(request: HttpRequest) -> HttpResponse:
    """Bolt verifies the signature (401 when it is missing, wrong or over 5 minutes old) and acks."""
    if not (settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET):
        return HttpResponse(NOT_CONFIGURED, status=503, content_type="text/plain")
    handler = _handler(settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.SLACK_API_URL)
    return handler.handle(request)
