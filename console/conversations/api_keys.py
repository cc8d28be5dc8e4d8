"""API keys of the OpenAI-compatible API: created, shown once, stored only as prefix and hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.utils import timezone

from console.conversations.models import ApiKey

API_KEY_PREFIX = "ab-"
API_KEY_SHOWN_CHARS = 11  # "ab-" and 8 random characters: enough to recognise and look up a key


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
