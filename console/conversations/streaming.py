"""One streaming path: `answering.answer()` on a worker thread, read as events as the model writes.

Modelled on simonw/llm's `Response`: iterate an `AnswerStream` for `Delta`s, then one `Done` (the
recorded Answer) or `Failed` (a status and a message for the user). The chat page (NDJSON) and
`/v1/chat/completions` (server-sent events) keep only their wire formats. The worker runs to the
end even when the reader stops early, so an answer whose client left is still recorded.
`failure_for` is the one mapping from answering's errors to HTTP statuses, for every path.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections

from console.conversations import answering
from console.conversations.models import Answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    """A piece of the answer's text, as generated; the pieces join to the recorded text."""

    text: str


@dataclass(frozen=True)
class Done:
    answer: Answer


@dataclass(frozen=True)
class Failed:
    status: int  # 400: the question or mode; 503: the model or adapter; 500: a bug (logged)
    message: str  # for the user: what went wrong


Event = Delta | Done | Failed


def failure_for(error: Exception) -> Failed:
    """The status and user message for an error `answering.answer` raised; a 500 is logged.

    Call it inside the `except` block, so a logged 500 carries its traceback.
    """
    if isinstance(error, answering.AnswerFailed):
        logger.warning("answering: the model could not answer: %s", error)
        return Failed(503, f"The model could not answer: {error}")
    if isinstance(error, answering.ChannelDisabled | ValueError):
        return Failed(400, str(error))
    logger.error("answering failed", exc_info=error)
    return Failed(500, "Answering failed; the server log has the details.")


class AnswerStream:
    """An answer being generated: iterate it for events, ending with one `Done` or `Failed`.

    Takes `answering.answer`'s arguments (less `on_delta`). The worker thread starts on `start()`
    or the first iteration and owns its own database connection, closed when it ends.
    """

    def __init__(self, question: str, **ask: Any) -> None:
        self._question, self._ask = question, ask
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="answer-stream", daemon=True)
        self._outcome: Done | Failed | None = None

    def start(self) -> AnswerStream:
        """Start answering now (iterating starts it too); idempotent."""
        if self._worker.ident is None:  # not started yet
            self._worker.start()
        return self

    def __iter__(self) -> Iterator[Event]:
        self.start()
        while True:
            event = self._events.get()
            yield event
            if not isinstance(event, Delta):
                return

    def wait(self, timeout: float | None = None) -> Done | Failed | None:
        """Block until the answer is recorded or has failed (None after `timeout`); the outcome."""
        self.start()
        self._worker.join(timeout)
        return self._outcome

    def _work(self) -> None:
        try:
            answer = answering.answer(
                self._question, **self._ask, on_delta=lambda text: self._events.put(Delta(text))
            )
            outcome: Done | Failed = Done(answer)
        except Exception as error:
            outcome = failure_for(error)
        finally:
            connections.close_all()  # this thread's own connection
        self._outcome = outcome
        self._events.put(outcome)
