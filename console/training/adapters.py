"""The one place that knows which adapter serves, and changes it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from threading import Lock

from django.db import transaction
from django.utils import timezone

from console.training.models import TrainingRun

ACTIVE_CACHE_SECONDS = 3.0
_cache_lock = Lock()


@dataclass(frozen=True)
class ActiveAdapter:
    run_id: int
    name: str
    path: str


@dataclass
class _Cached:
    at: float = 0.0  # time.monotonic() of the last read; 0: read again
    value: ActiveAdapter | None = None


_cache = _Cached()


def active_adapter() -> ActiveAdapter | None:
    """The live adapter, re-read at most every few seconds, so a promotion reaches every process fast."""
    with _cache_lock:
        if time.monotonic() - _cache.at < ACTIVE_CACHE_SECONDS:
            return _cache.value
    run = TrainingRun.objects.filter(active=True).only("id", "name", "adapter_path").first()
    value = ActiveAdapter(run.pk, run.name, run.adapter_path) if run else None
    with _cache_lock:
        _cache.at, _cache.value = time.monotonic(), value
    return value


def forget_active_adapter() -> None:
    with _cache_lock:
        _cache.at, _cache.value = 0.0, None


def promote(run: TrainingRun) -> None:
    """Make `run` the live adapter (also how a rollback is done: promote an older run)."""
    with transaction.atomic():
        TrainingRun.objects.filter(active=True).exclude(pk=run.pk).update(active=False)
        TrainingRun.objects.filter(pk=run.pk).update(active=True, promoted_at=timezone.now())
    transaction.on_commit(forget_active_adapter)
