"""Management commands of bot_kit."""

__all__: list[str] = []
