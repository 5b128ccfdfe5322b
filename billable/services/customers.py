"""Placeholder: being implemented."""


class CustomerService:
    """Placeholder: being implemented."""
