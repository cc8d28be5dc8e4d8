from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "console.conversations"
    label = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from console.conversations import receivers  # noqa: F401  (connects the signal receivers)
