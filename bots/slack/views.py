"""POST /slack/events: Slack's Events API, slash commands and interactivity in HTTP mode."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_bolt import BoltRequest
from slack_bolt.adapter.django import SlackRequestHandler
from slack_bolt.adapter.django.handler import to_bolt_request, to_django_response
from slack_sdk.signature import SignatureVerifier

from bots.slack.app import build_app

NOT_CONFIGURED = "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, then restart."
MALFORMED = (
    "Malformed request body: Slack sends UTF-8 JSON (an object) for events, or a form whose "
    "`payload` is a JSON object for interactivity, with string ids."
)


@lru_cache(maxsize=1)
def _handler(token: str, signing_secret: str, api_url: str) -> SlackRequestHandler:
    return SlackRequestHandler(build_app())


@csrf_exempt
@require_POST
def slack_events(request: HttpRequest) -> HttpResponse:
    """Bolt verifies the signature (401 when it is missing, wrong or over 5 minutes old) and acks.

    Bolt reads the body before it checks the signature, and raises on a body it cannot read, on
    ids of types Slack never sends, or on a timestamp that is not a number; such requests are
    answered here instead: 401 unsigned (a body that is not UTF-8 cannot even be verified), 400
    signed (which Slack itself never sends).
    """
    if not (settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET):
        return HttpResponse(NOT_CONFIGURED, status=503, content_type="text/plain")
    if not signed_by_slack(request):
        return JsonResponse({"error": "invalid request"}, status=401)  # as bolt answers it
    bolt_request = readable(request)
    if bolt_request is None:
        return HttpResponse(MALFORMED, status=400, content_type="text/plain")
    handler = _handler(settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET, settings.SLACK_API_URL)
    return to_django_response(handler.app.dispatch(bolt_request))  # what handler.handle does for a POST


def signed_by_slack(request: HttpRequest) -> bool:
    """Slack's signature of the body, at most five minutes old; a timestamp that is not a whole
    number or a body that is not UTF-8 (slack_sdk raises on both) is as invalid as a wrong signature."""
    try:
        return SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid_request(
            request.body, request.headers
        )
    except ValueError:
        return False


def readable(request: HttpRequest) -> BoltRequest | None:
    """The request as bolt reads it, or None when bolt cannot: the body is not JSON (or a form) of
    an object, an id (user, channel, team) is neither a string nor an object, or an event
    callback's `event` is not an object (bolt's own middleware reads it before any listener)."""
    try:
        bolt_request = to_bolt_request(request)
    except (ValueError, TypeError, AttributeError):  # JSONDecodeError is a ValueError
        return None
    body = bolt_request.body
    if body.get("type") == "event_callback" and not isinstance(body.get("event"), dict):
        return None
    return bolt_request
