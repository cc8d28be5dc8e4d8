"""bench/faults.py's pure parts: Slack's signing and retries, counting answers per question from the
fake Slack's log, the verdict, and the bad inputs (which the live /slack/events and /v1 must each
answer with their clear error)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from slack_sdk.signature import SignatureVerifier

from bench import bad_inputs
from bench.answer_log import Outcome, leaked, outcomes, percentile, tally, verdict
from bench.fault_scenarios import send
from bench.slack_events import Attempt, Slack, event_body, mention_event, sign, signed_headers
from bots.slack.blocks import THINKING
from tests.bots.slack_fake import Call, FakeSlack

SECRET = "bench-test-secret"
CANARIES = {"CODE-1": frozenset({"C0VAULT"})}


# --- signing and Slack's retries ---------------------------------------------------------------------


def test_signature_is_the_one_slack_sdk_verifies():
    body, timestamp = b'{"type": "event_callback"}', str(int(time.time()))
    signature = sign(SECRET, timestamp, body)
    assert signature == SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = signed_headers(SECRET, body, timestamp=timestamp)
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)


def test_a_retry_carries_its_number_and_reason_and_a_first_delivery_none():
    first = signed_headers(SECRET, b"{}")
    retry = signed_headers(SECRET, b"{}", retry=2, reason="http_timeout")
    assert "X-Slack-Retry-Num" not in first
    assert (retry["X-Slack-Retry-Num"], retry["X-Slack-Retry-Reason"]) == ("2", "http_timeout")


@pytest.mark.parametrize(
    "attempt, acked, reason",
    [
        (Attempt(0, 200, 0.2), True, ""),
        (Attempt(0, 200, 3.5), False, "http_timeout"),
        (Attempt(0, 500, 0.1), False, "http_error"),
        (Attempt(0, None, 3.0, "timeout"), False, "http_timeout"),
        (Attempt(0, None, 0.0, "ConnectionError"), False, "connection_failed"),
    ],
)
def test_an_attempt_is_acked_only_by_a_2xx_within_the_deadline(attempt, acked, reason):
    assert attempt.acked is acked
    if not acked:
        assert attempt.reason == reason


@pytest.fixture
def flaky_endpoint():
    """An HTTP endpoint that answers 500 twice, then 200, recording each request's headers."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(dict(self.headers))
            self.send_response(500 if len(seen) <= 2 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/slack/events", seen
    server.shutdown()
    server.server_close()


def test_an_unacknowledged_event_is_retried_on_slacks_schedule(flaky_endpoint):
    url, seen = flaky_endpoint
    waited: list[float] = []
    slack = Slack(url, SECRET, sleep=waited.append)
    delivery = slack.deliver(slack.mention("C0OPS", "Who is on call?"))
    assert [a.status for a in delivery.attempts] == [500, 500, 200] and delivery.acked
    assert waited == [0.0, 60.0]
    assert [h.get("X-Slack-Retry-Num") for h in seen] == [None, "1", "2"]
    assert seen[1]["X-Slack-Retry-Reason"] == "http_error"
    body = json.loads(delivery.body)
    assert body["event"]["ts"] == delivery.ts and body["event_id"] == delivery.event_id


# --- counting answers --------------------------------------------------------------------------------


def placeholder(channel: str, thread: str, ts: str) -> Call:
    return Call(
        "chat.postMessage", {"channel": channel, "thread_ts": thread, "text": THINKING}, {}, {"ts": ts}
    )


def answer(channel: str, ts: str, text: str = "Use the VPN portal.") -> Call:
    return Call(
        "chat.update", {"channel": channel, "ts": ts, "text": text, "blocks": [{"type": "section"}]}, {}
    )


def test_each_question_is_counted_answered_twice_told_or_lost():
    calls = [
        placeholder("C1", "1.1", "9.1"),
        answer("C1", "9.1"),  # 1.1: answered once
        placeholder("C1", "1.2", "9.2"),
        answer("C1", "9.2"),
        answer("C1", "9.2"),  # 1.2: its answer delivered twice
        placeholder("C1", "1.3", "9.3"),
        Call("chat.update", {"channel": "C1", "ts": "9.3", "text": "Sorry, I could not answer this one"}, {}),
        Call("chat.postMessage", {"channel": "C1", "thread_ts": "1.4", "text": "Please ask again"}, {}, {}),
        placeholder("C1", "1.5", "9.5"),  # 1.5: left "Thinking…"
    ]
    found = outcomes(calls, [("C1", f"1.{n}") for n in range(1, 7)], thinking=THINKING)
    assert [found[("C1", f"1.{n}")].state for n in range(1, 7)] == [
        "answered",
        "twice",
        "told",
        "told",
        "lost",
        "lost",
    ]
    assert found[("C1", "1.5")].stuck == 1 and found[("C1", "1.6")].placeholders == 0
    counts = tally(found.values())
    assert (counts["answered"], counts["twice"], counts["told"], counts["lost"], counts["stuck"]) == (
        1,
        1,
        2,
        2,
        1,
    )


def test_a_placeholder_lost_in_a_race_and_a_long_answers_second_message_count_nothing():
    calls = [
        placeholder("C1", "1.1", "9.1"),
        placeholder("C1", "1.1", "9.2"),  # the worker's, which lost the race ...
        Call("chat.delete", {"channel": "C1", "ts": "9.2"}, {}),  # ... and is taken back
        answer("C1", "9.1"),
        Call(
            "chat.postMessage", {"channel": "C1", "thread_ts": "1.1", "blocks": [{}], "text": "more"}, {}, {}
        ),
    ]
    (found,) = outcomes(calls, [("C1", "1.1")], thinking=THINKING).values()
    assert found == Outcome(placeholders=1, answers=1)


def test_a_secret_shown_outside_its_channels_is_a_leak():
    calls = [
        placeholder("C0OPS", "1.1", "9.1"),
        answer("C0OPS", "9.1", "The code is CODE-1."),
        placeholder("C0VAULT", "1.2", "9.2"),
        answer("C0VAULT", "9.2", "The code is CODE-1."),
    ]
    found = outcomes(calls, [("C0OPS", "1.1"), ("C0VAULT", "1.2")], thinking=THINKING, canaries=CANARIES)
    assert found[("C0OPS", "1.1")].leaks == 1 and found[("C0VAULT", "1.2")].leaks == 0
    assert leaked("C0DEV", '[{"text": "CODE-1"}]', CANARIES) and not leaked("C0VAULT", "CODE-1", CANARIES)


def test_the_verdict_passes_only_with_every_question_answered_once_and_nothing_else_wrong():
    assert verdict(tally([Outcome(answers=1), Outcome(answers=1)])) == "pass"
    assert verdict(tally([Outcome(answers=2), Outcome()])) == "FAIL: 1 lost, 1 answered twice"
    assert verdict(tally([Outcome(answers=1, leaks=1)])) == "FAIL: 1 leaked"
    assert verdict(tally([Outcome(told=1)]), mishandled=2, server_errors=1) == (
        "FAIL: 1 told to ask again, 2 bad inputs without their clear error, 1 5xx"
    )
    assert verdict(tally([]), problems=["ack p99 1.4 s"]) == "FAIL: ack p99 1.4 s"


def test_percentile_is_by_nearest_rank():
    values = [0.1 * n for n in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(0.5)
    assert percentile(values, 99) == pytest.approx(1.0)
    assert percentile([0.3], 99) == 0.3


# --- bad inputs ----------------------------------------------------------------------------------------


def test_there_are_at_least_200_bad_inputs_and_each_says_what_must_happen():
    files = bad_inputs.upload_files(max_upload_mb=1, max_unpacked_mb=2, max_entries=20)
    inputs = [
        *bad_inputs.slack_inputs(SECRET),
        *bad_inputs.v1_inputs("ab-key"),
        *(f.input for f in files),
        *bad_inputs.export_inputs(),
    ]
    assert len(inputs) >= 200
    assert all(item.expect for item in inputs)
    assert all(item.statuses and max(item.statuses) < 500 for item in inputs if item.kind in ("slack", "v1"))
    assert len(files[-1].data) > 1024 * 1024 and files[-1].expect == "failed"  # over the upload limit
    bomb = next(f for f in files if f.name == "bench-zip-bomb.docx")
    assert len(bomb.data) < 100_000


def test_judging_an_http_input_needs_the_right_status_and_for_v1_an_error_message():
    item = bad_inputs.BadInput("v1", "x", "400", statuses=frozenset({400}))
    bad_inputs.judge_http(item, 400, b'{"error": {"message": "The request body is not valid JSON."}}')
    assert item.ok
    bad_inputs.judge_http(item, 400, b"<html>Bad Request</html>")
    assert not item.ok
    bad_inputs.judge_http(item, 500, b"")
    assert not item.ok and item.outcome == "500"


def test_judging_a_document_needs_its_reason_or_an_intact_fence():
    bomb = bad_inputs.BadFile(
        "b.docx", b"", "failed", "zip bomb", bad_inputs.BadInput("upload", "b.docx", "")
    )
    bad_inputs.judge_document(bomb, "failed", "b.docx looks like a zip bomb", None)
    assert bomb.input.ok
    bad_inputs.judge_document(bomb, "failed", "", None)
    assert not bomb.input.ok
    doc = bad_inputs.BadFile("i.md", b"", "indexed", input=bad_inputs.BadInput("upload", "i.md", ""))
    bad_inputs.judge_document(doc, "indexed", "", False)
    assert not doc.input.ok and "fence" in doc.input.outcome


def test_formula_cells_are_found_in_csv():
    exported = b"question,answer,votes\nq,'=1+1,-1\nq,=1+1,2\nq,-cmd,0\n"
    assert bad_inputs.formula_cells_csv(exported) == ["=1+1", "-cmd"]


# --- against the live /slack/events and /v1 ---------------------------------------------------------------


@pytest.fixture
def live_slack(settings, live_server):
    fake = FakeSlack()
    settings.SLACK_BOT_TOKEN = "xoxb-test-token"
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.SLACK_API_URL = fake.url
    yield live_server.url, fake
    fake.close()


@pytest.mark.django_db(transaction=True)
def test_a_signed_malformed_event_gets_a_4xx_from_the_live_server(live_slack):
    from console.conversations.models import Question

    url, fake = live_slack
    slack = Slack(f"{url}/slack/events", SECRET)
    not_json = slack.post(b"{", signed_headers(SECRET, b"{"))
    no_event = b'{"type": "event_callback", "event": null}'
    null_event = slack.post(no_event, signed_headers(SECRET, no_event))
    assert (not_json.status, null_event.status) == (400, 400)
    body = event_body(
        {k: v for k, v in mention_event("C0OPS", "Hi?", "1.2").items() if k != "channel"}, "EvX"
    )
    assert slack.post(body, signed_headers(SECRET, body)).status == 200  # acknowledged, ignored
    time.sleep(0.3)
    assert [c.method for c in fake.calls if c.method != "auth.test"] == [] and Question.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_every_bad_slack_and_v1_request_gets_its_clear_error(live_slack):
    """The bench's own inputs against the live server (the 27 MB and 5 MB bodies left out here)."""
    from console.conversations.api_keys import create_api_key
    from console.conversations.models import Question

    url, _ = live_slack
    _, key = create_api_key("bench")
    inputs = [
        item
        for item in [*bad_inputs.slack_inputs(SECRET), *bad_inputs.v1_inputs(key)]
        if len(item.body) < 2 * 1024 * 1024
    ]
    for item in inputs:
        bad_inputs.judge_http(item, *send(url, item))
    assert [(item.name, item.outcome) for item in inputs if not item.ok] == []
    assert Question.objects.count() == 0
