"""bot_kit — aiogram 3 integration for billable."""

__all__: list[str] = []
