from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "console.training"
    label = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from console.training import receivers  # noqa: F401  (connects the signal receivers)
