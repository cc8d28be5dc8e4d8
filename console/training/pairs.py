"""Turning answers and feedback into training pairs for curation."""

from __future__ import annotations

from django.db import transaction

from console.conversations.models import Answer
from console.training.models import TrainingPair


def add_correction(answer: Answer, better_answer: str, *, reason: str = "") -> TrainingPair:
    """A person's better answer to a question the bot got wrong: approved, with the original context."""
    better_answer = better_answer.strip()
    if not better_answer:
        raise ValueError("The better answer is empty.")
    with transaction.atomic():
        return TrainingPair.objects.create(
            question=answer.question,
            context=answer.context,
            answer=better_answer,
            source=TrainingPair.Source.CORRECTION,
            status=TrainingPair.Status.APPROVED,
            origin=answer,
            reason=reason.strip(),
        )
