from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Answer workers reply on each platform through its `Replier`."""
        from bots.discord.replies import DiscordReplies
        from bots.slack.replies import SlackReplies
        from console.conversations.questions import register_replier

        register_replier("slack", SlackReplies)
        register_replier("discord", DiscordReplies)
