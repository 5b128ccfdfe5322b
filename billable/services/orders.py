"""Placeholder: being implemented."""


class OrderService:
    """Placeholder: being implemented."""
