"""Helpers for tests that run real worker processes against the test database."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit


def database_url_for_tests() -> str:
    """settings.DATABASE_URL pointed at the test database this session created."""
    from django.conf import settings
    from django.db import connection

    url = urlsplit(settings.DATABASE_URL)
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


def wait_until(condition, timeout: float = 90.0) -> bool:
    """Poll `condition` every 0.1 s until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
