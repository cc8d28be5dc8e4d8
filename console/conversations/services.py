"""Conversation services: votes on answers (cast and withdrawn) and the API keys of the OpenAI-compatible API."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from django.db import transaction
from django.utils import timezone

from console.answering import hash_id
from console.conversations.models import Answer, ApiKey, Feedback

logger = logging.getLogger(__name__)

API_KEY_PREFIX = "ab-"
API_KEY_SHOWN_CHARS = 11  # "ab-" and 8 random characters: enough to recognise and look up a key


def record_feedback(answer_id: int, *, platform: str, voter: str, value: int, reason: str = "") -> Feedback:
    """Record `voter`'s 👍 (+1) or 👎 (-1) on an answer; a second vote by the same voter replaces the first.

    `voter` is the platform's user id; only its hash (answering.hash_id) is stored.
    Raises Answer.DoesNotExist for an unknown answer and ValueError for a bad value or voter.
    """
    if value not in (1, -1):
        raise ValueError(f"A vote is +1 or -1, not {value!r}.")
    if not voter:
        raise ValueError("A vote needs a voter.")
    with transaction.atomic():
        answer = Answer.objects.select_for_update().get(pk=answer_id)
        feedback, created = Feedback.objects.update_or_create(
            answer=answer,
            voter=hash_id(platform, voter),
            defaults={"platform": platform, "value": value, "reason": reason},
        )
    logger.info(
        "feedback %s on answer %s: %+d (%s)", feedback.pk, answer.pk, value, "new" if created else "changed"
    )
    return feedback


def withdraw_feedback(answer_id: int, *, platform: str, voter: str, value: int) -> bool:
    """Take back `voter`'s vote of `value` on an answer (a removed 👍/👎 reaction); True if there was one.

    Only a vote of that value goes: someone who removes a 👍 after switching to 👎 keeps the 👎.
    A 👍 candidate pair loses the vote with it (training.receivers), and goes when none is left.
    """
    deleted, _ = Feedback.objects.filter(
        answer_id=answer_id, voter=hash_id(platform, voter), value=value
    ).delete()
    if deleted:
        logger.info("feedback on answer %s withdrawn: %+d", answer_id, value)
    return bool(deleted)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """A fresh key as (key, prefix, sha256 hex). Only the prefix and the hash are ever stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:API_KEY_SHOWN_CHARS], hash_api_key(key)


def create_api_key(name: str) -> tuple[ApiKey, str]:
    """A new active key named `name`, and the key itself, which the caller shows once."""
    key, prefix, key_hash = new_api_key()
    return ApiKey.objects.create(name=name, prefix=prefix, key_hash=key_hash), key


def authenticate_api_key(key: str) -> ApiKey | None:
    """The active ApiKey for `key`, or None. Looked up by prefix, compared in constant time."""
    if not key.startswith(API_KEY_PREFIX) or len(key) <= API_KEY_SHOWN_CHARS:
        return None
    candidate = ApiKey.objects.filter(prefix=key[:API_KEY_SHOWN_CHARS], active=True).first()
    if candidate is None or not hmac.compare_digest(candidate.key_hash, hash_api_key(key)):
        return None
    ApiKey.objects.filter(pk=candidate.pk).update(last_used_at=timezone.now())
    return candidate
