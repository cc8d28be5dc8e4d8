"""Event de-duplication: chat platforms deliver an event more than once (retries, reconnects).

The first delivery of an event id claims it in Redis (SET NX with an expiry); every later delivery of
the same id within the window is a duplicate. Redis is the RQ one, so every web and bot process agrees;
the call has the acknowledgement path's short timeout (ACK_REDIS_TIMEOUT).
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from console.conversations.questions import ack_connection

logger = logging.getLogger(__name__)

# Slack retries after about 0 s, 1 min and 5 min; an hour covers every retry with room to spare.
DEDUPE_WINDOW_SECONDS = 60 * 60


def first_delivery(platform: str, event_id: str, *, window: int = DEDUPE_WINDOW_SECONDS) -> bool:
    """True for the first delivery of `event_id`, False for a repeat within `window` seconds.

    Fails open: without an id, or when Redis cannot be reached, the event counts as new, because a
    rare double answer is better than a lost question.
    """
    if not event_id:
        return True
    key = f"events:seen:{platform}:{event_id}"
    try:
        claimed = ack_connection().set(key, "1", nx=True, ex=window)
    except RedisError:
        logger.warning(
            "event %s:%s: Redis unavailable, processing without de-duplication", platform, event_id
        )
        return True
    if not claimed:
        logger.info("event %s:%s: duplicate delivery ignored", platform, event_id)
    return bool(claimed)
