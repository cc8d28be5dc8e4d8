import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from console.settings import env_bool, env_float, env_int


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
    assert set(settings.RQ_QUEUES) == {"answer", "ingest", "train"}
    assert all(q["URL"] == settings.REDIS_URL for q in settings.RQ_QUEUES.values())


def test_misspelt_debug_stops_the_start_and_names_the_variable():
    result = _import_settings(DEBUG="ture", SECRET_KEY="x", DATA_DIR=settings.DATA_DIR.as_posix())
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG='ture' is not a yes/no value" in result.stderr
    assert "1, true, yes, on or 0, false, no, off" in result.stderr


def test_unreadable_number_is_a_clear_startup_error_not_a_value_error():
    result = _import_settings(
        DEBUG="0", SECRET_KEY="x", MAX_UPLOAD_MB="25MB", DATA_DIR=settings.DATA_DIR.as_posix()
    )
    assert result.returncode != 0
    assert "MAX_UPLOAD_MB='25MB' is not a number" in result.stderr
    assert "ValueError" not in result.stderr


def test_context_contrast_out_of_range_stops_the_start():
    result = _import_settings(
        DEBUG="0", SECRET_KEY="x", GENERATION_CONTEXT_CONTRAST="-1", DATA_DIR=settings.DATA_DIR.as_posix()
    )
    assert result.returncode != 0
    assert "GENERATION_CONTEXT_CONTRAST=-1.0 is out of range: use 0 (off) to 10" in result.stderr


@pytest.mark.parametrize("value", ["1", "true", "YES", " On "])
def test_env_bool_reads_the_words_for_on(monkeypatch, value):
    monkeypatch.setenv("ANSWERBOT_TEST_FLAG", value)
    assert env_bool("ANSWERBOT_TEST_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF "])
def test_env_bool_reads_the_words_for_off(monkeypatch, value):
    monkeypatch.setenv("ANSWERBOT_TEST_FLAG", value)
    assert env_bool("ANSWERBOT_TEST_FLAG", True) is False


@pytest.mark.parametrize("value", [None, "", "  "])
def test_env_bool_unset_or_empty_is_the_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("ANSWERBOT_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("ANSWERBOT_TEST_FLAG", value)
    assert env_bool("ANSWERBOT_TEST_FLAG", True) is True
    assert env_bool("ANSWERBOT_TEST_FLAG", False) is False


@pytest.mark.parametrize("value", ["ture", "2", "y", "enabled"])
def test_env_bool_refuses_other_words(monkeypatch, value):
    monkeypatch.setenv("ANSWERBOT_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="ANSWERBOT_TEST_FLAG=.* is not a yes/no value"):
        env_bool("ANSWERBOT_TEST_FLAG")


def test_env_int_reads_a_whole_number_and_defaults_when_empty(monkeypatch):
    monkeypatch.setenv("ANSWERBOT_TEST_COUNT", " 12 ")
    assert env_int("ANSWERBOT_TEST_COUNT", 4) == 12
    monkeypatch.setenv("ANSWERBOT_TEST_COUNT", "")
    assert env_int("ANSWERBOT_TEST_COUNT", 4) == 4


@pytest.mark.parametrize("value", ["4.5", "four", "0x10"])
def test_env_int_refuses_what_is_not_a_whole_number(monkeypatch, value):
    monkeypatch.setenv("ANSWERBOT_TEST_COUNT", value)
    with pytest.raises(
        ImproperlyConfigured, match=r"ANSWERBOT_TEST_COUNT=.* is not a whole number.*default \(4\)"
    ):
        env_int("ANSWERBOT_TEST_COUNT", 4)


def test_env_float_reads_decimals_and_exponents(monkeypatch):
    monkeypatch.setenv("ANSWERBOT_TEST_RATE", "1e-3")
    assert env_float("ANSWERBOT_TEST_RATE", 0.5) == 0.001
    monkeypatch.setenv("ANSWERBOT_TEST_RATE", "4")
    assert env_float("ANSWERBOT_TEST_RATE", 0.5) == 4.0


@pytest.mark.parametrize("value", ["0,25", "a quarter", "nan", "inf"])
def test_env_float_refuses_what_is_not_a_finite_number(monkeypatch, value):
    monkeypatch.setenv("ANSWERBOT_TEST_RATE", value)
    with pytest.raises(ImproperlyConfigured, match="ANSWERBOT_TEST_RATE=.* is not a number"):
        env_float("ANSWERBOT_TEST_RATE", 0.5)
