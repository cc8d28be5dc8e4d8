"""Conversations as threads: earlier turns for follow-ups, and which reply is which answer."""

from __future__ import annotations

from console.conversations.models import Answer
from ml.prompting import Turn


def thread_history(platform: str, channel: str, thread: str, *, limit: int = 6) -> list[Turn]:
    """The bot's earlier exchanges in a thread, oldest first, as prompt turns (at most `limit`)."""
    if not thread:
        return []
    earlier = Answer.objects.filter(platform=platform, channel=channel, thread=thread).order_by("-created_at")
    turns: list[Turn] = []
    for answer in reversed(list(earlier[: max(limit // 2, 1)])):
        turns += [Turn("user", answer.question), Turn("assistant", answer.text)]
    return turns[-limit:]


def attach_message(answer: Answer, message_id: str) -> None:
    """Remember the platform's id of the reply, so reactions on it find the answer."""
    Answer.objects.filter(pk=answer.pk).update(message_id=message_id)


def answer_for_message(platform: str, channel: str, message_id: str) -> Answer | None:
    return Answer.objects.filter(platform=platform, channel=channel, message_id=message_id).first()
