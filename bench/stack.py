"""The product's processes for bench/faults.py, started as production starts them, on a throwaway DATA_DIR.

The embedded PostgreSQL and Redis (console/embedded.py) run under DATA_DIR; every other process is
the command docker-compose.yml (or `runall`) runs, each in its own process group, so that `kill -9`
takes a gunicorn master with its workers, or an RQ worker with its work-horse (which RQ moves to a
group of its own, so it is killed by pid too), as an OOM kill or a lost container would. A process
that exits on its own is started again after a pause and recorded, as a container's restart policy
would; the report lists those exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.report import ROOT

DATA_DIR = ROOT / "var" / "bench-faults"
RESTART_PAUSE = 2.0  # seconds before an exited process is started again


def commands(port: int, *, web: str = "gunicorn", answer_workers: int = 1, training: bool = False) -> dict:
    """Process name → argv: the commands of docker-compose.yml's services (runall's for `runserver`)."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    table = {
        "web": (
            [sys.executable, "-m", "gunicorn", "console.wsgi:application", "--bind", f"127.0.0.1:{port}"]
            if web == "gunicorn"
            else [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
        ),
        **{f"answer-{n}": [*manage, "rqworker", "answer"] for n in range(1, answer_workers + 1)},
        "ingest": [*manage, "rqworker", "ingest"],
        "cron": [*manage, "rqcron", "console.cron"],
    }
    if training:
        table["train"] = [*manage, "rqworker", "train", "--worker-class", "console.workers.SpawnWorker"]
    return table


@dataclass
class Exit:
    """A process that exited without being told to."""

    name: str
    code: int | None
    at: float
    note: str = ""


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen | None = None
    expected_exit: bool = False
    starts: int = 0
    exit_times: list[float] = field(default_factory=list)

    def restart_pause(self) -> float:
        """Doubles with each exit in the last minute, up to 30 s, as container restart policies back off."""
        now = time.monotonic()
        recent = [at for at in self.exit_times if now - at < 60]
        return min(RESTART_PAUSE * 2 ** max(len(recent) - 1, 0), 30.0)


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    table: dict[str, list[str]]
    port: int
    processes: dict[str, Process] = field(default_factory=dict)
    exits: list[Exit] = field(default_factory=list)
    note: Callable[[], str] = lambda: ""  # what the bench is doing now, for the exit records

    def __post_init__(self) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        for name, argv in self.table.items():
            self.processes[name] = Process(name, argv, self.data_dir / "logs" / f"{name}.log")
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- starting and stopping --------------------------------------------------------------------

    def start_all(self) -> None:
        for name in self.processes:
            self.start(name)
        self._watcher.start()

    def start(self, name: str) -> None:
        process = self.processes[name]
        with self._lock:
            log = open(process.log, "a")  # noqa: SIM115 - the child holds it
            log.write(f"\n--- start {time.strftime('%H:%M:%S')} ---\n")
            log.flush()
            process.popen = subprocess.Popen(
                process.argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 takes its children too
            )
            log.close()
            process.expected_exit = False
            process.starts += 1

    def kill(self, name: str) -> None:
        """kill -9 of the process and everything it started: its process group and its
        descendants (an RQ work-horse moves to a process group of its own)."""
        process = self.processes[name]
        with self._lock:
            process.expected_exit = True
            if process.popen is not None and process.popen.poll() is None:
                self.kill_children(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=30)

    def kill_children(self, name: str) -> list[int]:
        """kill -9 of the process's children only (an RQ worker's work-horse); their pids."""
        process = self.processes[name]
        if process.popen is None:
            return []
        try:
            children = psutil.Process(process.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
        return [child.pid for child in children]

    def children(self, name: str) -> list[int]:
        process = self.processes[name]
        if process.popen is None or process.popen.poll() is not None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(process.popen.pid).children(recursive=True)]
        return []

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    def stop_all(self) -> None:
        """SIGTERM to every group, then SIGKILL to what is left after 20 s."""
        self._stop.set()
        with self._lock:
            running = [p for p in self.processes.values() if p.popen is not None and p.popen.poll() is None]
            for process in running:
                process.expected_exit = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        for process in running:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)  # type: ignore[union-attr]

    def _watch(self) -> None:
        """The restart policy: a process that exited on its own is started again after a pause."""
        while not self._stop.wait(0.5):
            for process in self.processes.values():
                with self._lock:
                    popen = process.popen
                    if popen is None or popen.poll() is None or process.expected_exit:
                        continue
                    self.exits.append(Exit(process.name, popen.returncode, time.monotonic(), self.note()))
                    process.exit_times.append(time.monotonic())
                    process.expected_exit = True  # recorded once
                    pause = process.restart_pause()
                timer = threading.Timer(pause, self._restart_if_down, args=(process.name,))
                timer.daemon = True
                timer.start()

    def _restart_if_down(self, name: str) -> None:
        if self._stop.is_set():
            return
        process = self.processes[name]
        with self._lock:
            if process.popen is not None and process.popen.poll() is not None:
                self.start(name)

    # --- readiness -------------------------------------------------------------------------------

    def wait_for_web(self, timeout: float = 120.0) -> float:
        """Seconds until the web process answers its login page."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/admin/login/", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"the web process did not answer within {timeout:.0f} s; see {self.log('web')}")

    def wait_for_worker(self, name: str, connection: Any, queue: str, timeout: float = 120.0) -> float:
        """Seconds until the RQ worker `name` has registered with Redis on `queue`."""
        from rq import Queue, Worker

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            popen = self.processes[name].popen
            with contextlib.suppress(Exception):
                pids = {w.pid for w in Worker.all(queue=Queue(queue, connection=connection))}
                if popen is not None and popen.pid in pids:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"worker {name} did not register within {timeout:.0f} s; see {self.log(name)}")

    def log(self, name: str) -> Path:
        return self.processes[name].log


# --- set-up -----------------------------------------------------------------------------------------


def fresh_data_dir() -> None:
    """DATA_DIR emptied, but for the converted model (models/), after stopping its servers."""
    from console import embedded

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        embedded.stop_postgres(DATA_DIR)
    with contextlib.suppress(Exception):
        embedded.stop_redis(DATA_DIR)
    for child in DATA_DIR.iterdir():
        if child.name == "models":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def product_env(
    args: argparse.Namespace, *, database_url: str, redis_url: str, slack_url: str, secret: str
) -> dict[str, str]:
    """The environment every process runs with: production settings (DEBUG off) on DATA_DIR."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "SLACK_APP_TOKEN", "DISCORD_TOKEN", "BASE_MODEL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DATA_DIR=str(DATA_DIR),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="bench-faults-only-secret-key",
        SECURE_COOKIES="0",  # the admin over plain http on 127.0.0.1
        SLACK_BOT_TOKEN="xoxb-bench-faults",
        SLACK_SIGNING_SECRET=secret,
        SLACK_API_URL=slack_url,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        GENERATION_MAX_NEW_TOKENS=str(args.max_new_tokens),
        SWEEP_AFTER_SECONDS=str(args.sweep_after),
    )
    return env
