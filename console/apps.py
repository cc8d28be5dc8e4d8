from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The project package doubles as an app for project-wide commands (bootstrap, runall, embedded)."""

    name = "console"
    default_auto_field = "django.db.models.BigAutoField"
