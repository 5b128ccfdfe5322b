"""Placeholder: being implemented."""


class TransactionService:
    """Placeholder: being implemented."""
