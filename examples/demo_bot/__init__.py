"""The demo bot (``examples.demo_bot.bot``) and how to run it (``python -m examples.demo_bot``)."""

__all__: list[str] = []
