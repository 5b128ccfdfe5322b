"""Placeholder: being implemented."""


class BalanceService:
    """Placeholder: being implemented."""
