import os
import subprocess
import sys

from django.conf import settings


def _import_settings(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import console.settings"],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_secret_key_with_debug_off_is_a_clear_startup_error(tmp_path):
    # An empty .env-free working copy is not needed: load_dotenv never overrides set variables,
    # so set DEBUG explicitly off and SECRET_KEY empty.
    result = _import_settings(DEBUG="0", SECRET_KEY="", DATA_DIR=settings.DATA_DIR.as_posix())
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_runs_without_a_secret_key():
    result = _import_settings(DEBUG="1", SECRET_KEY="", DATA_DIR=settings.DATA_DIR.as_posix())
    assert result.returncode == 0, result.stderr


def test_rq_queues_ingest_and_train_share_the_configured_redis():
    assert set(settings.RQ_QUEUES) == {"ingest", "train"}
    assert all(q["URL"] == settings.REDIS_URL for q in settings.RQ_QUEUES.values())
