#!/usr/bin/env python
import os
import sys

# Commands that serve until stopped: an embedded server they start stays up, as today (runall
# stops them on Ctrl-C). Every other command is one-off: at its end it stops the embedded
# servers it started itself, unless another process uses them by then.
SERVING_COMMANDS = {
    "runall",
    "runserver",
    "rqworker",
    "rqworker-pool",
    "rqscheduler",
    "rqcron",
    "runslackbot",
    "rundiscordbot",
}


def stop_embedded_servers_started_here() -> None:
    """Stop what this one-off command started (console/embedded.py), and say what it did."""
    from console import embedded

    if not embedded.started_here():
        return
    from django.db import connections

    connections.close_all()
    stopped = embedded.stop_servers_started_here()
    if stopped:
        sys.stderr.write(f"Stopped the embedded {' and '.join(stopped)}, started for this command.\n")
    for data_dir, name in embedded.started_here():
        sys.stderr.write(
            f"Left the embedded {name} under {data_dir} running: another process uses it now. "
            f"Stop it with `DATA_DIR={data_dir} python manage.py embedded stop` (`make stop` for var/).\n"
        )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    finally:
        if (sys.argv[1:2] or ["help"])[0] not in SERVING_COMMANDS:
            stop_embedded_servers_started_here()
