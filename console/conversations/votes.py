"""Votes on answers: a 👍 or 👎 cast, changed or taken back. A 👍 nominates a training pair
(console.training.receivers listens for the Feedback rows written here)."""

from __future__ import annotations

import logging

from django.db import transaction

from console.conversations.models import Answer, Feedback
from console.conversations.pseudonyms import hash_id
from console.training.pairs import CorrectionRefused, add_correction

__all__ = ["CorrectionRefused", "record_feedback", "record_follow_up", "withdraw_feedback"]

logger = logging.getLogger(__name__)


def record_feedback(
    answer_id: int, *, platform: str, voter: str, value: int, reason: str = "", category: str = ""
) -> Feedback:
    """Record `voter`'s 👍 (+1) or 👎 (-1) on an answer; a second vote by the same voter replaces the first.

    `voter` is the platform's user id; only its hash (pseudonyms.hash_id) is stored. `category` is
    what was wrong (Feedback.Category), from a 👎's follow-up.
    Raises Answer.DoesNotExist for an unknown answer and ValueError for a bad value, category or voter.
    """
    if value not in (1, -1):
        raise ValueError(f"A vote is +1 or -1, not {value!r}.")
    if category and category not in Feedback.Category.values:
        raise ValueError(f"Unknown category {category!r}; use one of {', '.join(Feedback.Category.values)}.")
    if not voter:
        raise ValueError("A vote needs a voter.")
    with transaction.atomic():
        answer = Answer.objects.select_for_update().get(pk=answer_id)
        feedback, created = Feedback.objects.update_or_create(
            answer=answer,
            voter=hash_id(platform, voter),
            defaults={"platform": platform, "value": value, "reason": reason, "category": category},
        )
    logger.info(
        "feedback %s on answer %s: %+d (%s)", feedback.pk, answer.pk, value, "new" if created else "changed"
    )
    return feedback


def record_follow_up(
    answer_id: int, *, platform: str, voter: str, category: str, reason: str = "", better_answer: str = ""
) -> Feedback:
    """A 👎's follow-up, the same on every platform: what was wrong goes on the vote, and a better
    answer becomes a candidate correction pair for curators (training.pairs.add_correction).

    The vote is recorded first, so a refused correction (CorrectionRefused, its message for the
    person) still leaves the 👎 and its category.
    """
    feedback = record_feedback(
        answer_id, platform=platform, voter=voter, value=-1, reason=reason.strip(), category=category
    )
    if better_answer.strip():
        add_correction(feedback.answer, better_answer, platform=platform, voter=voter, reason=reason)
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
