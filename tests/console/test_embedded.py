"""The embedded servers start on demand, are shared, and keep their data across restarts."""

import psycopg
import redis

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


def test_embedded_postgres_has_pgvector_and_keeps_data_across_a_restart(tmp_path):
    url = embedded.postgres_url(tmp_path)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE TABLE kept (v vector(3))")
            conn.execute("INSERT INTO kept VALUES ('[1,2,3]')")
        assert embedded.stop_postgres(tmp_path) is True
        url = embedded.postgres_url(tmp_path)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v::text FROM kept").fetchone() == ("[1,2,3]",)
    finally:
        embedded.stop_postgres(tmp_path)
