"""The sweeper: work whose job died or was lost is queued again, or failed with a reason.

Chat questions (console.conversations.questions), documents left pending or indexing
(console.knowledge.indexing) and training runs left queued or running (console.training.runs),
each untouched for SWEEP_AFTER_SECONDS with no live RQ job. Safe to run at any time and from
several places: `manage.py sweep`, `runall` at start-up, or as an RQ job on a schedule
(`sweep` is the job function, e.g. every minute with RQ's cron).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connections

from console.conversations.questions import sweep_questions
from console.knowledge.indexing import sweep_documents
from console.training.runs import sweep_runs

logger = logging.getLogger(__name__)


def sweep(older_than_seconds: int | None = None) -> dict[str, dict[str, int]]:
    """Sweep questions, documents and runs; the counts of each by outcome."""
    seconds = settings.SWEEP_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    older_than = timedelta(seconds=seconds)
    try:
        counts = {
            "questions": sweep_questions(older_than),
            "documents": sweep_documents(older_than),
            "runs": sweep_runs(older_than),
        }
    finally:
        connections.close_all()
    logger.info("sweep: %s", counts)
    return counts
