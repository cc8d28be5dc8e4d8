"""POST /slack/events: Slack's Events API, slash commands and interactivity in HTTP mode."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_bolt.adapter.django import SlackRequestHandler
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from bots.slack.app import build_app

NOT_CONFIGURED = "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, then restart."
MALFORMED = (
    "Malformed request body: Slack sends UTF-8 JSON (an object) for events, or a form whose "
    "`payload` is a JSON object for interactivity."
)


@lru_cache(maxsize=1)
def _handler(token: str, signing_secret: str, api_url: str) -> SlackRequestHandler:
    return SlackRequestHandler(build_app())


@csrf_exempt
@require_POST
def slack_events(request: HttpRequest) -> HttpResponse:
    """Bolt verifies the signature (401 when it is missing, wrong or over 5 minutes old) and acks.

    Bolt reads the body before it checks the signature, and raises on a body it cannot read or a
    timestamp that is not a number; those requests are answered here: 401 unsigned (a body that is
    not UTF-8 cannot even be verified), 400 signed.
    """
    if not (settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET):
        return HttpResponse(NOT_CONFIGURED, status=503, content_type="text/plain")
    if not signed_by_slack(request):
        return JsonResponse({"error": "invalid request"}, status=401)  # as bolt answers it
    if not readable(request):
        return HttpResponse(MALFORMED, status=400, content_type="text/plain")
    handler = _handler(settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.SLACK_API_URL)
    return handler.handle(request)


def signed_by_slack(request: HttpRequest) -> bool:
    """Slack's signature of the body, at most five minutes old; a timestamp that is not a whole
    number or a body that is not UTF-8 (slack_sdk raises on both) is as invalid as a wrong signature."""
    try:
        return SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid_request(
            request.body, request.headers
        )
    except ValueError:
        return False


def readable(request: HttpRequest) -> bool:
    """Whether bolt can read the body: parsed as bolt parses it, a JSON object, and an event
    callback's `event` an object too (bolt's own middleware reads it before any listener)."""
    try:
        body = parse_body(request.body.decode("utf-8"), request.content_type)
    except ValueError:  # JSONDecodeError is one
        return False
    return isinstance(body, dict) and (
        body.get("type") != "event_callback" or isinstance(body.get("event"), dict)
    )
