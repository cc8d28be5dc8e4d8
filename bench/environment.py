"""The environment bench scripts run in: Django set up for a benchmark, a throwaway database, so
none ever touches real data, and a meter of the CPU that other work took meanwhile, since the
machine may be shared."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator


def setup_django() -> None:
    """Configure Django as the app does (console.settings, DATA_DIR and the rest from the
    environment), quiet: WARNING logs, which also hides sentence-transformers' progress bars."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django.setup()


@contextlib.contextmanager
def throwaway_environment(name: str) -> Iterator[None]:
    """A fresh migrated database beside the real one (`<name of the real one>_<name>`) and a
    temporary MEDIA_ROOT, both removed afterwards. Call after django.setup()."""
    from django.db import connection
    from django.test import override_settings

    real_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"{real_name}_{name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
    if connection.settings_dict["NAME"] == real_name:
        raise RuntimeError("Refusing to run: the throwaway database was not created.")
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f"{name}-media-") as media,
            override_settings(MEDIA_ROOT=media),
        ):
            yield
    finally:
        connection.creation.destroy_test_db(real_name, verbosity=0, keepdb=False)


class CpuMeter:
    """How much CPU other work took while the benchmark ran: the machine may be shared.
    Create it after django.setup().

    Ours is this process plus the PostgreSQL server when it runs on this machine (the
    postmaster's own and reaped children's time, plus its live children's).
    """

    def __init__(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        stat = _proc_stat(backend)
        self.postmaster = int(stat[1]) if stat and _proc_comm(backend).startswith("postgres") else None
        self.start = self.sample()
        self.started = time.monotonic()

    def sample(self) -> tuple[float, float]:
        """(busy CPU seconds of the whole machine, CPU seconds of ours), since boot."""
        with open("/proc/stat") as handle:
            ticks = [int(x) for x in handle.readline().split()[1:]]
        busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system, irq softirq steal
        usage = os.times()
        ours = usage.user + usage.system
        if self.postmaster:
            main = _proc_stat(self.postmaster)
            ours += sum(int(x) for x in main[11:15]) / CLOCK_TICKS if main else 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                child = _proc_stat(int(pid))
                if child and int(child[1]) == self.postmaster:
                    ours += (int(child[11]) + int(child[12])) / CLOCK_TICKS
        return busy / CLOCK_TICKS, ours

    def other_share(self) -> float:
        """Share of all cores' time since start that other work used."""
        busy, ours = (now - then for now, then in zip(self.sample(), self.start, strict=True))
        return max(0.0, busy - ours) / ((time.monotonic() - self.started) * len(os.sched_getaffinity(0)))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (index 0 is the state), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _proc_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""
