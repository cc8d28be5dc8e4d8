"""Counting answers per question from the fake Slack's log, for bench/faults.py: what each
question Slack delivered got (answered once, twice, only an apology, nothing), which replies or
contexts leaked a secret to a channel that may not read it, and the verdict. Pure functions of
recorded Web API calls (tests/bots/slack_fake.Call: method, args, response)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # a question: (channel, ts of the message that asked it)


@dataclass
class Outcome:
    """What one question got in Slack: its placeholder, the answers put into it, apologies."""

    placeholders: int = 0  # "Thinking…" messages posted for it and not taken back
    answers: int = 0  # answers delivered (a placeholder replaced by an answer with blocks)
    apologies: int = 0  # a placeholder replaced by plain text ("could not answer")
    told: int = 0  # plain messages in its thread ("ask again in a few minutes")
    stuck: int = 0  # placeholders still saying "Thinking…"
    leaks: int = 0  # replies, or contexts the model saw, with a secret the channel may not read

    @property
    def state(self) -> str:
        if self.answers == 1:
            return "answered"
        if self.answers > 1:
            return "twice"
        return "told" if self.apologies or self.told else "lost"


def outcomes(
    calls: Iterable[Any],
    asked: Iterable[Key],
    *,
    thinking: str,
    canaries: dict[str, frozenset[str]] | None = None,
) -> dict[Key, Outcome]:
    """Each asked question's Outcome, read from the Web API calls the bot made (FakeSlack.Call:
    method, args, response), in order. A question's replies are found by its thread (the asking
    message's ts) and its placeholders by the ts Slack gave them."""
    found = {key: Outcome() for key in asked}
    owner: dict[Key, Key] = {}  # (channel, placeholder ts) → question
    replaced: set[Key] = set()
    for call in calls:
        channel, key = call.args.get("channel", ""), None
        if call.method == "chat.postMessage":
            key = (channel, call.args.get("thread_ts") or "")
            if key not in found:
                continue
            if thinking in (call.args.get("text") or ""):
                owner[(channel, (call.response or {}).get("ts", ""))] = key
                found[key].placeholders += 1
            elif not call.args.get("blocks"):
                found[key].told += 1  # a message with blocks continues a long answer
        elif call.method in ("chat.update", "chat.delete"):
            placeholder = (channel, call.args.get("ts", ""))
            key = owner.get(placeholder)
            if key is None:
                continue
            replaced.add(placeholder)
            if call.method == "chat.delete":
                found[key].placeholders -= 1
            elif call.args.get("blocks"):
                found[key].answers += 1
            else:
                found[key].apologies += 1
        if key is not None and canaries and leaked(channel, _shown(call.args), canaries):
            found[key].leaks += 1
    for placeholder, key in owner.items():
        if placeholder not in replaced:
            found[key].stuck += 1
    return found


def _shown(args: dict) -> str:
    blocks = args.get("blocks") or ""
    return (args.get("text") or "") + (blocks if isinstance(blocks, str) else json.dumps(blocks))


def leaked(channel: str, text: str, canaries: dict[str, frozenset[str]]) -> bool:
    """Whether `text`, shown or given to the model in `channel`, holds a secret the channel may not read."""
    return any(secret in text and channel not in allowed for secret, allowed in canaries.items())


def tally(found: Iterable[Outcome]) -> Counter:
    """Questions by state (answered, twice, told, lost), plus stuck placeholders and leaks."""
    counts: Counter = Counter()
    for outcome in found:
        counts[outcome.state] += 1
        counts["stuck"] += outcome.stuck
        counts["leaks"] += bool(outcome.leaks)
    return counts


def verdict(
    counts: Counter, *, mishandled: int = 0, server_errors: int = 0, problems: Sequence[str] = ()
) -> str:
    """ "pass", or FAIL with what went wrong: a question lost, answered twice or only apologised
    for, a placeholder left, a leak, a bad input without its clear error, a 5xx, or a problem the
    scenario found itself (a target missed, a retried run that did not finish)."""
    found = [
        f"{n} {label}"
        for n, label in (
            (counts["lost"], "lost"),
            (counts["twice"], "answered twice"),
            (counts["told"], "told to ask again"),
            (counts["stuck"], "placeholders left"),
            (counts["leaks"], "leaked"),
            (mishandled, "bad inputs without their clear error"),
            (server_errors, "5xx"),
        )
        if n
    ]
    found += problems
    return "pass" if not found else "FAIL: " + ", ".join(found)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
