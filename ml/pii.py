"""Scrub personal data and secrets from text before it becomes training data or is exported.

Replaces, in this order (most specific first): secrets and tokens, e-mail addresses, chat
user mentions, card-like numbers (Luhn-checked), phone numbers. Placeholders keep the
sentence readable: "[EMAIL]", "[PHONE]", "[USER]", "[SECRET]", "[CARD]".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_SECRET_PATTERNS = [
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack bot/user/app tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),  # OpenAI/Anthropic-style keys
    re.compile(r"\b(?:ghp|gho|ghu|ghs|github_pat)_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),  # JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # long hex secrets
    re.compile(
        r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]*[0-9])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])[A-Za-z0-9+/]{32,}={0,2}"
    ),
]
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_MENTIONS = [
    re.compile(r"<@[UW][A-Z0-9]{6,}(?:\|[^>]*)?>"),  # Slack <@U123ABC> / <@U123|name>
    re.compile(r"<@!?\d{15,21}>"),  # Discord <@123…> / <@!123…>
    re.compile(r"\b[UW][A-Z0-9]{8,10}\b(?=[^A-Za-z0-9]|$)"),  # bare Slack user ids
]
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(
    r"(?<![\w/.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w/-])"
)


@dataclass(frozen=True)
class Scrubbed:
    text: str
    found: Counter = field(default_factory=Counter)  # kind -> count

    @property
    def changed(self) -> bool:
        return bool(self.found)


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DATE_OR_TIME = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d{1,2}[.:]\d{2}")


def _phone_like(match: str) -> bool:
    """7 to 15 digits, and not a date (2024-06-01, 01.06.2024) or a time."""
    return 7 <= len(re.sub(r"\D", "", match)) <= 15 and not _DATE_OR_TIME.fullmatch(match.strip())


def scrub(text: str) -> Scrubbed:
    """Text with secrets, e-mails, user mentions, card numbers and phone numbers replaced."""
    found: Counter = Counter()

    def sub(
        pattern: re.Pattern,
        placeholder: str,
        kind: str,
        value: str,
        check: Callable[[str], bool] | None = None,
    ) -> str:
        def replace(match: re.Match) -> str:
            if check and not check(match.group(0)):
                return match.group(0)
            found[kind] += 1
            return placeholder

        return pattern.sub(replace, value)

    for pattern in _SECRET_PATTERNS:
        text = sub(pattern, "[SECRET]", "secret", text)
    text = sub(_EMAIL, "[EMAIL]", "email", text)
    for pattern in _MENTIONS:
        text = sub(pattern, "[USER]", "mention", text)
    text = sub(_CARD, "[CARD]", "card", text, check=lambda m: _luhn_ok(re.sub(r"\D", "", m)))
    text = sub(_PHONE, "[PHONE]", "phone", text, check=_phone_like)
    return Scrubbed(text, found)
