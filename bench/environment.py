"""The throwaway environment every bench script runs in, so none ever touches real data."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator


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
