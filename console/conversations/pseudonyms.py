"""Pseudonyms for chat users: answers and votes store a keyed hash of the platform's user id, never the id."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def hash_id(platform: str, user_id: str) -> str:
    """A stable pseudonym for a user id, so votes dedupe without storing who voted."""
    if not user_id:
        return ""
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{platform}:{user_id}".encode(), hashlib.sha256).hexdigest()
