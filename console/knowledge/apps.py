from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "console.knowledge"
    label = "knowledge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from console.knowledge import receivers  # noqa: F401  (connects the signal receivers)
